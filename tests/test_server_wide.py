"""Bans, the version check, the shutdown notice, offline user lists, typing notices."""

from __future__ import annotations

import io
from pathlib import Path

from twisted.trial import unittest

from chatservice.auth.credentials import CredentialsFile
from chatservice.auth.passwords import is_hashed, verify_password
from chatservice.auth.scram import ScramKeys
from chatservice.server.policy import BanList
from chatservice.service import SHUTDOWN
from chatservice.session import TYPING_SECONDS
from chatservice.store.sqlite import SQLiteStore
from chatservice.tools import passwd
from chatservice.version import SERVER_VERSION, compatible
from tests.test_protocol import HarnessTestCase
from tests.test_scram import login as scram_login


class BanListTests(unittest.TestCase):
    """Addresses and networks."""

    def test_matching(self) -> None:
        bans = BanList(["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"])
        self.assertTrue(bans.banned("203.0.113.7"))
        self.assertFalse(bans.banned("203.0.113.8"))
        self.assertTrue(bans.banned("10.20.30.40"))
        self.assertTrue(bans.banned("::ffff:10.1.1.1"))
        self.assertTrue(bans.banned("2001:db8::1"))
        self.assertFalse(bans.banned("not an address"))
        self.assertFalse(BanList().banned("10.0.0.1"))

    def test_bad_entry(self) -> None:
        self.assertRaises(ValueError, BanList, ["10.0.0.0/99"])

    def test_file(self) -> None:
        path = Path(self.mktemp())
        path.write_text("# bad actors\n203.0.113.7  # one\n\n10.0.0.0/8\n")
        self.assertEqual(BanList.read(path), ["203.0.113.7", "10.0.0.0/8"])


class BannedConnectionTests(HarnessTestCase):
    """A banned address is told and closed before login."""

    def setUp(self) -> None:
        self.harness_options = {"bans": BanList(["192.0.2.0/24"])}
        super().setUp()

    def test_banned(self) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        address = IPv4Address("TCP", "192.0.2.55", 1234)
        protocol = self.harness.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.assertEqual(
            transport.value(),
            b'{"type":"banned","message":"Your address is banned from this server."}\n',
        )
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)
        self.assertEqual(self.harness.factory.connections, set())

    def test_others_welcome(self) -> None:
        connection = self.harness.connect(host="198.51.100.1")
        self.connections.append(connection)
        connection.login("yoda")
        self.assertIn("yoda", self.harness.state.sessions)


class VersionTests(HarnessTestCase):
    """A JSON client says its version; an incompatible one is told and closed."""

    def test_compatible_rule(self) -> None:
        self.assertTrue(compatible("0.1.9", "0.1.0"))
        self.assertFalse(compatible("0.2.0", "0.1.0"))
        self.assertTrue(compatible("1.4", "1.0"))
        self.assertFalse(compatible("2.0", "1.0"))
        self.assertFalse(compatible("banana", "1.0"))

    def test_hello(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "hello", "version": SERVER_VERSION, "id": 1})
        self.assertEqual(
            connection.json(), [{"type": "hello", "version": SERVER_VERSION, "id": 1}]
        )
        self.assertFalse(connection.closed)

    def test_outdated(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "hello", "version": "99.0.0"})
        (reply,) = connection.json()
        self.assertEqual((reply["type"], reply["version"]), ("outdated_client", SERVER_VERSION))
        self.assertTrue(connection.closed)


class ShutdownTests(HarnessTestCase):
    """Stopping the service tells every connection, logged in or not."""

    def test_every_connection_told(self) -> None:
        (yoda,) = self.online("yoda")
        hans = self.connect()
        hans.login_json("hans")
        stranger = self.connect()
        yoda.output()
        d = self.harness.factory.disconnect_all(SHUTDOWN)
        self.assertEqual(yoda.lines(), ["The server is shutting down."])
        self.assertEqual(hans.json(), [{"type": "shutdown", "message": "The server is shutting down."}])
        self.assertEqual(stranger.lines(), ["The server is shutting down."])
        self.assertNoResult(d)
        for connection in (yoda, hans, stranger):
            self.assertTrue(connection.closed)
            connection.drop()
        self.successResultOf(d)

    def test_grace_period_bounds_the_wait(self) -> None:
        self.connect()
        d = self.harness.factory.disconnect_all(SHUTDOWN, grace=2)
        self.assertNoResult(d)
        self.harness.clock.advance(2)
        self.successResultOf(d)


class OfflineListTests(HarnessTestCase):
    """users offline / userlist with onlinetype false."""

    def test_text(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("users offline")
        self.assertEqual(yoda.lines(), ["leia", "luke", "obiwan"])
        yoda.send("users")
        self.assertEqual(yoda.lines(), ["hans"])
        hans.send("hide")
        yoda.send("users offline")
        self.assertEqual(yoda.lines(), ["hans", "leia", "luke", "obiwan"])
        yoda.send("users sideways")
        self.assertTrue(yoda.lines()[0].startswith("Error. <online|offline> is one of online, offline."))

    def test_json_seed_form(self) -> None:
        self.online("yoda")
        hans = self.connect()
        hans.login_json("hans")
        hans.send_json({"type": "userlist", "onlinetype": False, "id": 1})
        hans.send_json({"type": "userlist", "onlinetype": "true", "id": 2})
        self.assertEqual(
            hans.json(),
            [
                {"type": "userlist", "users": ["leia", "luke", "obiwan"], "onlinetype": False, "id": 1},
                {"type": "userlist", "users": ["yoda"], "onlinetype": True, "id": 2},
            ],
        )


class TypingTests(HarnessTestCase):
    """typing on|off, to one user or everyone, ending by itself."""

    def test_typing_to_everyone_expires(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        yoda.send("typing on")
        self.assertEqual(yoda.output(), "")
        self.assertEqual(hans.lines(), ["yoda is typing..."])
        self.assertEqual(luke.lines(), ["yoda is typing..."])
        self.harness.clock.advance(TYPING_SECONDS - 1)
        yoda.send("typing on")
        self.assertEqual(hans.output(), "", "a repeat is not announced again")
        self.harness.clock.advance(TYPING_SECONDS - 1)
        self.assertEqual(hans.output(), "")
        self.harness.clock.advance(1)
        self.assertEqual(hans.lines(), ["yoda stopped typing"])
        self.assertEqual(luke.lines(), ["yoda stopped typing"])

    def test_typing_to_one_user_and_off(self) -> None:
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        hans.send("typing on yoda")
        self.assertEqual(yoda.lines(), ["hans is typing..."])
        self.assertEqual(luke.output(), "")
        hans.send("typing off")
        self.assertEqual(yoda.lines(), ["hans stopped typing"])
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 3, "only the 3 inactivity timers")

    def test_json_and_blocks(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("block hans")
        luke = self.connect()
        luke.login_json("luke")
        luke.send_json({"type": "typing", "status": True, "id": 3})
        self.assertEqual(luke.json(), [{"type": "ok", "command": "typing", "id": 3}])
        self.assertEqual(yoda.lines()[-1], "luke is typing...")
        hans.output()
        hans.send("typing on yoda")
        self.assertEqual(hans.lines(), ["Error. yoda has blocked you."])
        hans.send("typing on")
        self.assertNotIn("hans is typing...", yoda.lines())

    def test_logout_ends_typing(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("typing on")
        hans.output()
        yoda.drop()
        self.assertEqual(hans.lines(), ["yoda stopped typing", "yoda logged out"])
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 1, "only hans's inactivity timer")


class PasswdToolTests(unittest.TestCase):
    """chatservice-passwd FILE USER, and --data-dir DIR USER."""

    def run_tool(self, path: Path, user: str, stdin: str, *options: str) -> int:
        return passwd.main([*options, str(path), user], io.StringIO(stdin))

    def test_sqlite_store_add_and_change(self) -> None:
        data = Path(self.mktemp())
        data.mkdir()
        self.assertEqual(self.run_tool(data, "rey", "scavenger\nscavenger\n", "--data-dir"), 0)
        self.assertEqual(self.run_tool(data, "rey", "jakku-one\njakku-one\n", "--data-dir"), 0)
        store = SQLiteStore(data / "chat.sqlite3")
        store.open()
        self.addCleanup(store.close)
        row = store.account("rey")
        assert row is not None and row[1] is not None
        secret, keys = row
        self.assertTrue(is_hashed(secret))
        self.assertTrue(verify_password("jakku-one", secret))
        scram_login("rey", "jakku-one", ScramKeys.parse(keys))
        self.assertNotIn("jakku-one", repr(row))
        self.assertEqual(store.usernames(), ["rey"])

    def test_store_refusals(self) -> None:
        missing = Path(self.mktemp())
        self.assertEqual(self.run_tool(missing, "rey", "scavenger\nscavenger\n", "--data-dir"), 1)
        self.assertFalse(missing.exists())
        self.assertEqual(passwd.main(["--store", "sqlite", "rey"], io.StringIO("")), 2)
        self.assertEqual(passwd.main(["--data-dir", "rey"], io.StringIO("")), 2)
        self.assertEqual(passwd.main(["--other", "x", "rey"], io.StringIO("")), 2)
        self.assertEqual(passwd.main(["--help"], io.StringIO("")), 0)

    def test_add_and_change(self) -> None:
        path = Path(self.mktemp())
        path.write_text("yoda wise\n")
        self.assertEqual(self.run_tool(path, "luke", "skywalker\nskywalker\n"), 0)
        self.assertEqual(self.run_tool(path, "yoda", "wiser-one\nwiser-one\n"), 0)
        accounts = CredentialsFile.load(path)
        self.assertTrue(is_hashed(accounts.secret("luke") or ""))
        self.assertTrue(verify_password("skywalker", accounts.secret("luke") or ""))
        self.assertTrue(verify_password("wiser-one", accounts.secret("yoda") or ""))
        self.assertNotIn("skywalker", path.read_text())

    def test_writes_scram_keys(self) -> None:
        path = Path(self.mktemp())
        self.assertEqual(self.run_tool(path, "luke", "skywalker\nskywalker\n"), 0)
        keys = CredentialsFile.load(path).scram_keys("luke")
        assert keys is not None
        scram_login("luke", "skywalker", keys)
        self.assertTrue(path.read_text().endswith(f" {keys.format()}\n"))

    def test_refusals_change_nothing(self) -> None:
        path = Path(self.mktemp())
        path.write_text("yoda wise\n")
        self.assertEqual(self.run_tool(path, "luke", "one-pass\ntwo-pass\n"), 1)
        self.assertEqual(self.run_tool(path, "luke", "abc\nabc\n"), 1)
        self.assertEqual(self.run_tool(path, "luke", ""), 1)
        self.assertEqual(self.run_tool(path, "bad name", "x\nx\n"), 2)
        self.assertEqual(path.read_text(), "yoda wise\n")

    def test_new_file(self) -> None:
        path = Path(self.mktemp())
        self.assertEqual(self.run_tool(path, "rey", "scavenger\nscavenger\n"), 0)
        self.assertTrue(CredentialsFile.load(path).exists("rey"))
