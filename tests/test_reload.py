"""Reloading without a restart (:mod:`chatservice.reload`), on a whole chat server on a fake clock.

The :class:`~chatservice.reload.Reloader` reads the files named by the
options the server started with (ban file, limits file, credentials file,
``ssl:`` certificates) and applies them all or not at all; connections are
the harness's (:class:`tests.support.ChatHarness`), over StringTransport.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from chatservice.reload import ReloadFailed, ReloadOnSignal, ReloadRefused
from chatservice.server.certificates import CertificateError, CurrentCertificate, certificate_options
from chatservice.server.proxied import ProxiedFactory, follow_login_deadline
from chatservice.server.registry import BANNED
from chatservice.settings import RELOADABLE, RESTART_ONLY, SettingsError, read_limits
from chatservice.web.site import chat_site, follow_line_length
from tests.certs import make_certificates
from tests.support import ChatHarness, Connection

Events = list[dict[str, Any]]


def logged(events: Events, level: LogLevel | None = None) -> list[str]:
    """The text of the captured log events (of ``level`` only, if given)."""
    return [formatEvent(event) for event in events if level is None or event["log_level"] == level]


class ReloadTestCase(unittest.TestCase):
    """A harness whose reloader reads a ban file, a limits file and the credentials file."""

    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="chat-reload-"))
        self.addCleanup(shutil.rmtree, self.work, True)
        self.ban_file = self.work / "bans.txt"
        self.ban_file.write_text("# banned at start\n10.9.0.0/16\n", encoding="utf-8")
        self.limits_file = self.work / "limits.conf"
        self.limits_file.write_text("max-per-address = 3\n", encoding="utf-8")
        self.followed: list[Any] = []
        self.harness = ChatHarness()
        # Last: no timer is left behind.
        self.addCleanup(lambda: self.assertEqual(self.harness.clock.getDelayedCalls(), []))
        self.addCleanup(self.harness.close_all)
        self.reloader = self.harness.chat.reloader
        # The options as twistd gives them: the harness's greeting delay
        # stands for a limit given on the command line.
        self.config = self.reloader.config
        self.config.update(
            {
                "ban": ["192.0.2.1"],
                "ban-file": self.ban_file,
                "limits": self.limits_file,
                "limits-from-command-line": frozenset({"greeting-delay"}),
            }
        )
        # The harness loads the state and serves without starting the service.
        self.reloader.serving = lambda: True
        self.reloader.follow(self.followed.append)
        # As at start: what the files say now is in force.
        self.successResultOf(self.reloader.reload("setUp"))
        self.followed.clear()

    def reload(self) -> tuple[list[str], Events]:
        """Reload (it must succeed): the change lines, and what was logged."""
        with capturedLogs() as events:
            changes = self.successResultOf(self.reloader.reload("test"))
        return changes, events

    def refused(self) -> tuple[ReloadRefused, Events]:
        """Reload (it must be refused): the error, and what was logged."""
        with capturedLogs() as events:
            failure = self.failureResultOf(self.reloader.reload("test"), ReloadRefused)
        return failure.value, events

    def connect(self, host: str) -> Connection:
        connection = self.harness.connect(host)
        self.addCleanup(connection.drop)
        return connection

    def first_words(self, host: str) -> str:
        """What the server says first to a new connection from ``host`` (a refusal, or the greeting)."""
        address = IPv4Address("TCP", host, 5000)
        protocol = self.harness.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, None)
        self.harness.factory.output_batcher.flush_now()
        return transport.value().decode("utf-8")


class BanFileTests(ReloadTestCase):
    def test_new_bans_refuse_new_connections_and_end_matching_ones(self) -> None:
        yoda = self.connect("10.1.0.5")
        yoda.login("yoda")
        hans = self.connect("10.2.0.5")
        hans.login("hans")
        self.assertTrue(self.harness.factory.registry.policy.bans.banned("10.9.1.1"))
        self.ban_file.write_text("10.2.0.0/16  # hans's network\n", encoding="utf-8")

        changes, events = self.reload()

        self.assertEqual(
            changes,
            [
                "ban added: 10.2.0.0/16",
                "ban lifted: 10.9.0.0/16",
                "ended 1 connection(s) from 10.2.0.5: its address is banned now",
            ],
        )
        # One log line per change, naming who asked.
        self.assertEqual(
            [line for line in logged(events) if line.startswith("Reload (test): ")],
            [f"Reload (test): {change}" for change in changes],
        )
        self.assertIn("Logout: hans from 10.2.0.5", logged(events))
        # hans is told, and closed; yoda chats on.
        self.assertIn(BANNED, hans.output())
        self.assertTrue(hans.closed)
        self.assertFalse(yoda.closed)
        yoda.send("users")
        self.assertIn("No other users are online.", yoda.output())
        # New connections see the new bans; the command line's --ban stays.
        self.assertIn(BANNED, self.first_words("10.2.7.7"))
        self.assertIn("Welcome", self.first_words("10.9.1.1"))
        self.assertIn(BANNED, self.first_words("192.0.2.1"))

    def test_a_json_client_is_told_in_json(self) -> None:
        luke = self.connect("10.2.0.9")
        luke.login_json("luke")
        self.ban_file.write_text("10.2.0.9\n", encoding="utf-8")
        self.reload()
        self.assertEqual(luke.json(), [{"type": "banned", "message": BANNED}])
        self.assertTrue(luke.closed)

    def test_unparsable_ban_file_is_refused_and_the_old_bans_stay(self) -> None:
        self.ban_file.write_text("10.2.0.0/16\nnot-an-address\n", encoding="utf-8")
        error, events = self.refused()
        self.assertIn(f"--ban-file {self.ban_file}", str(error))
        self.assertIn("not-an-address", str(error))
        errors = logged(events, LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertRegex(
            errors[0],
            r"^Reload \(test\) refused: --ban-file .*bans.txt: .*not-an-address.*;"
            r" the previous settings stay in force$",
        )
        bans = self.harness.factory.registry.policy.bans
        self.assertTrue(bans.banned("10.9.1.1"))
        self.assertFalse(bans.banned("10.2.0.1"))
        self.assertEqual(self.followed, [])

    def test_missing_ban_file_is_refused(self) -> None:
        self.ban_file.unlink()
        error, _events = self.refused()
        self.assertIn("cannot read", str(error))
        self.assertTrue(self.harness.factory.registry.policy.bans.banned("10.9.1.1"))

    def test_the_operators_rehash_reloads(self) -> None:
        """``ChatState.rehash`` (the operator command ``rehash``) is this reload."""
        self.assertEqual(self.harness.state.rehash, self.reloader.reload)
        self.ban_file.write_text("10.2.0.0/16\n", encoding="utf-8")
        with capturedLogs() as events:
            changes = self.successResultOf(self.harness.state.rehash("operator yoda"))
        self.assertEqual(changes[0], "ban added: 10.2.0.0/16")
        self.assertIn("Reload (operator yoda): ban added: 10.2.0.0/16", logged(events))

    def test_unchanged_files_change_nothing(self) -> None:
        changes, events = self.reload()
        self.assertEqual(changes, [])
        self.assertEqual(logged(events)[-1], "Reload (test): nothing changed")


class LimitsTests(ReloadTestCase):
    def test_limits_change_for_new_connections(self) -> None:
        policy = self.harness.factory.registry.policy
        self.assertEqual(policy.max_connections_per_address, 3)
        first = self.connect("10.3.0.1")
        second = self.connect("10.3.0.1")
        self.limits_file.write_text(
            "# fewer per address, longer lines\nmax-per-address = 1\nmax-line-length = 100\n"
            "max-message-length = 50\nlogin-deadline = 30\n",
            encoding="utf-8",
        )

        changes, _events = self.reload()

        self.assertEqual(
            sorted(changes),
            [
                "limit login-deadline: 60 -> 30",
                "limit max-line-length: 8192 -> 100",
                "limit max-message-length: 8192 -> 50",
                "limit max-per-address: 3 -> 1",
            ],
        )
        # Open connections are not dropped; a new one from that address is refused.
        self.assertFalse(first.closed or second.closed)
        self.assertIn("Too many connections from your address.", self.first_words("10.3.0.1"))
        # New connections get the new limits; what copied a limit follows it.
        new = self.harness.factory.policy
        self.assertEqual((new.max_line_length, new.login_deadline), (100, 30))
        self.assertEqual(self.followed, [new])
        self.assertEqual(self.harness.state.max_message_length, 50)
        self.assertEqual(self.harness.slowdown.max_delay, 15)
        fresh = self.connect("10.4.0.1")
        self.assertEqual(fresh.protocol._policy, new)
        fresh.login("luke")
        fresh.send("broadcast " + "x" * 51)
        self.assertIn("50", fresh.output())

    def test_proxied_and_web_listeners_follow(self) -> None:
        """What ``makeService`` registers: the PROXY header's deadline, the web input limit."""
        proxied = ProxiedFactory(self.harness.factory, self.harness.clock, 60)
        site = chat_site(self.harness.factory)
        self.reloader.follow(partial(follow_login_deadline, proxied))
        self.reloader.follow(partial(follow_line_length, site))
        self.limits_file.write_text("login-deadline = 20\nmax-line-length = 1000\n", encoding="utf-8")
        self.reload()
        self.assertEqual(proxied.deadline, 20)
        self.assertEqual(site.input_limit, 2 * 1000 + 4096)

    def test_a_limit_removed_from_the_file_returns_to_its_default(self) -> None:
        self.limits_file.write_text("", encoding="utf-8")
        changes, _events = self.reload()
        self.assertEqual(changes, ["limit max-per-address: 3 -> 20"])

    def test_command_line_values_are_kept(self) -> None:
        self.config["limits-from-command-line"] = frozenset({"greeting-delay", "max-per-address"})
        self.config["max-per-address"] = 3
        self.limits_file.write_text("max-per-address = 7\nflood-rate = 2.5\n", encoding="utf-8")
        changes, events = self.reload()
        self.assertEqual(changes, ["limit flood-rate: 5 -> 2.5"])
        self.assertIn(
            "Reload: limit max-per-address: the command line's value is kept"
            " (the limits file's is ignored)",
            logged(events, LogLevel.warn),
        )
        self.assertEqual(self.harness.factory.policy.max_connections_per_address, 3)

    def test_bad_limits_file_refuses_everything(self) -> None:
        # The ban file is good and changed, but the limits file is not: nothing changes.
        self.ban_file.write_text("10.2.0.0/16\n", encoding="utf-8")
        for text, why in (
            ("max-per-address = 0\n", "max-per-address must be at least 1, not 0"),
            ("max-per-address = many\n", "max-per-address must be a number, not 'many'"),
            ("max-people = 3\n", "'max-people' is not a limit"),
            ("flush-interval = 1\n", "flush-interval changes only with a restart"),
            ("max-per-address 3\n", "expected 'option = value'"),
            ("max-per-address = 3\nmax-per-address = 4\n", "max-per-address is set twice"),
        ):
            self.limits_file.write_text(text, encoding="utf-8")
            error, events = self.refused()
            self.assertIn(f"{self.limits_file}:", str(error))
            self.assertIn(why, str(error))
            self.assertEqual(len(logged(events, LogLevel.error)), 1)
            policy = self.harness.factory.registry.policy
            self.assertEqual(policy.max_connections_per_address, 3)
            self.assertFalse(policy.bans.banned("10.2.0.1"))

    def test_every_problem_is_logged(self) -> None:
        self.limits_file.write_text("max-per-address = 0\n", encoding="utf-8")
        self.ban_file.write_text("nonsense\n", encoding="utf-8")
        error, events = self.refused()
        self.assertEqual(len(error.problems), 2)
        self.assertEqual(len(logged(events, LogLevel.error)), 2)


class CredentialsTests(ReloadTestCase):
    def test_new_changed_and_removed_lines(self) -> None:
        path = self.harness.credentials_path
        lines = path.read_text(encoding="utf-8").splitlines()
        # luke changes his password in the chat: the store has it, the file does not.
        luke = self.connect("10.5.0.1")
        luke.login("luke", "jedi")
        lines = [line for line in lines if not line.startswith(("leia ", "yoda "))]
        lines += ["yoda wiser", "rey scavenger", "root toor"]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        changes, _events = self.reload()

        self.assertEqual(
            sorted(changes),
            sorted(
                [
                    f"account rey imported from {path}",
                    f"account yoda: password changed in {path}",
                    f"account 'root' not imported ({path}:{len(lines)}): root is reserved",
                    f"account leia is no longer in {path}: it stays in the store",
                ]
            ),
        )
        self.assertEqual(self.harness.account("yoda").secret, "wiser")
        self.assertEqual(self.harness.account("rey").secret, "scavenger")
        self.assertEqual(self.harness.account("leia").secret, "princess")
        self.assertIsNone(self.harness.account("root"))
        self.assertEqual(self.harness.account("luke").secret, "jedi")
        # The new password and the new account log in; the removed line's account too.
        for username, password in (("yoda", "wiser"), ("rey", "scavenger"), ("leia", "princess")):
            self.connect(f"10.6.0.{len(username)}").login(username, password)
        # Read again unchanged: nothing to do.
        self.assertEqual(self.reload()[0], [])

    def test_bad_credentials_file_is_refused(self) -> None:
        path = self.harness.credentials_path
        path.write_text("yoda wiser\nyoda again\n", encoding="utf-8")
        self.ban_file.write_text("10.2.0.0/16\n", encoding="utf-8")
        error, _events = self.refused()
        self.assertIn(f"--credentials {path}:2: yoda is listed twice", str(error))
        self.assertEqual(self.harness.account("yoda").secret, "wise")
        self.assertFalse(self.harness.factory.registry.policy.bans.banned("10.2.0.1"))

    def test_a_store_failure_is_reported_and_nothing_else_changes(self) -> None:
        self.harness.credentials_path.write_text("yoda wiser\n", encoding="utf-8")
        self.ban_file.write_text("10.2.0.0/16\n", encoding="utf-8")
        store = self.harness.accounts.store

        def broken(*args: object) -> defer.Deferred[bool]:
            return defer.fail(OSError("disk full"))

        self.patch(store, "set_secret", broken)
        with capturedLogs():
            failure = self.failureResultOf(self.reloader.reload("test"), ReloadFailed)
        self.assertIn("disk full", str(failure.value))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertFalse(self.harness.factory.registry.policy.bans.banned("10.2.0.1"))


class CertificateTests(ReloadTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.first = make_certificates(self.mkdir("first"))
        self.live = self.work / "live"
        self.live.mkdir()
        self.install(self.first)
        self.description = (
            f"ssl:0:interface=127.0.0.1:privateKey={self.live / 'key.pem'}:certKey={self.live / 'cert.pem'}"
        )
        self.certificate = CurrentCertificate(certificate_options(self.description))
        self.reloader.certificates[self.description] = self.certificate

    def mkdir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir()
        return path

    def install(self, certs: dict[str, Path], key: dict[str, Path] | None = None) -> None:
        shutil.copy(certs["cert"], self.live / "cert.pem")
        shutil.copy((key or certs)["key"], self.live / "key.pem")

    def presented(self) -> bytes:
        """The certificate (DER) a new TLS connection presents."""
        from OpenSSL import crypto

        connection = self.certificate.serverConnectionForTLS(None)  # type: ignore[arg-type]
        return crypto.dump_certificate(crypto.FILETYPE_ASN1, connection.get_certificate())

    def test_new_certificate_for_new_connections(self) -> None:
        before = self.presented()
        second = make_certificates(self.mkdir("second"))
        self.install(second)
        changes, _events = self.reload()
        self.assertEqual(len(changes), 1)
        self.assertRegex(
            changes[0],
            rf"^certificate of {self.description}: now CN=localhost, expires [-\d]+ [:\d]+ UTC, sha256 ([0-9A-F]{{2}}:){{31}}[0-9A-F]{{2}}$",
        )
        after = self.presented()
        self.assertNotEqual(before, after)
        self.assertEqual(after, self._der(second["cert"]))

    @staticmethod
    def _der(path: Path) -> bytes:
        from OpenSSL import crypto

        return crypto.dump_certificate(
            crypto.FILETYPE_ASN1, crypto.load_certificate(crypto.FILETYPE_PEM, path.read_bytes())
        )

    def test_key_not_matching_the_certificate_is_refused(self) -> None:
        before = self.presented()
        second = make_certificates(self.mkdir("second"))
        self.install(second, key=self.first)
        error, events = self.refused()
        self.assertIn(f"certificate of {self.description}", str(error))
        self.assertEqual(len(logged(events, LogLevel.error)), 1)
        self.assertEqual(self.presented(), before)

    def test_missing_or_garbled_files_are_refused(self) -> None:
        before = self.presented()
        (self.live / "key.pem").unlink()
        error, _events = self.refused()
        self.assertIn("No such file", str(error))
        self.install(self.first)
        (self.live / "cert.pem").write_text("not a certificate\n")
        self.refused()
        self.assertEqual(self.presented(), before)

    def test_certificate_options_errors(self) -> None:
        with self.assertRaises(CertificateError):
            certificate_options("ssl:0:privateKey=/nonexistent/key.pem")


class OrderTests(ReloadTestCase):
    def test_reloads_run_one_at_a_time(self) -> None:
        pending: list[tuple[defer.Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []

        def later(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            d: defer.Deferred[Any] = defer.Deferred()
            pending.append((d, f, args))
            return d

        self.reloader.run_in_thread = later
        self.ban_file.write_text("10.2.0.0/16\n", encoding="utf-8")
        first = self.reloader.reload("first")
        second = self.reloader.reload("second")
        self.assertEqual(len(pending), 1)  # the second waits for the first
        d, f, args = pending.pop()
        with capturedLogs():
            d.callback(f(*args))
            self.assertEqual(len(self.successResultOf(first)), 2)
            d, f, args = pending.pop()
            d.callback(f(*args))
        self.assertEqual(self.successResultOf(second), [])

    def test_refused_until_serving(self) -> None:
        self.reloader.serving = lambda: False
        error, _events = self.refused()
        self.assertIn("not serving yet", str(error))


class SettingsTests(unittest.TestCase):
    def test_read_limits(self) -> None:
        path = Path(self.mktemp())
        path.write_text("# comment\n\nflood-rate = 2.5  # per second\ntimeout=30\n", encoding="utf-8")
        self.assertEqual(read_limits(path), {"flood-rate": 2.5, "timeout": 30.0})
        path.write_bytes(b"\xff\n")
        with self.assertRaises(SettingsError):
            read_limits(path)


class SignalTests(unittest.TestCase):
    """SIGHUP schedules a reload on the reactor, while the service runs."""

    def test_sighup_reloads_while_running(self) -> None:
        scheduled: list[Callable[[], None]] = []
        asked: list[str] = []

        class Reactor:
            def callFromThread(self, f: Callable[..., None], *args: object) -> None:
                scheduled.append(lambda: f(*args))

        class Asked:
            def reload(self, requested_by: str) -> defer.Deferred[list[str]]:
                asked.append(requested_by)
                return defer.fail(ReloadRefused(["bad file"]))

        before = signal.getsignal(signal.SIGHUP)
        service = ReloadOnSignal(Asked(), Reactor())  # type: ignore[arg-type]
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(len(scheduled), 1)  # the handler only scheduled it
        self.assertEqual(asked, [])
        scheduled.pop()()
        self.assertEqual(asked, ["SIGHUP"])  # a refusal is logged by the reloader, not raised
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)


class DocsTests(unittest.TestCase):
    """docs/operating.rst says which limits a reload changes."""

    def test_every_limit_is_placed(self) -> None:
        text = (Path(__file__).parent.parent / "docs" / "operating.rst").read_text(encoding="utf-8")
        section = text.split("\nReloading\n---------\n", 1)[1]
        section = re.split(r"\n[^\n]+\n-+\n", section, maxsplit=1)[0]  # up to the next section
        lines = section.splitlines()
        borders = [index for index, line in enumerate(lines) if line.startswith("=====")]
        self.assertEqual(len(borders), 3)
        reloadable, restart_only = [], []
        for row in lines[borders[1] + 1 : borders[2]]:
            reloadable.append(row[:57])
            restart_only.append(row[57:])
        for option in RELOADABLE:
            self.assertIn(f"``{option}``", " ".join(reloadable), option)
        for option in RESTART_ONLY:
            self.assertIn(f"``{option}``", " ".join(restart_only), option)
