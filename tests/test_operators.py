"""Operators and their commands, through the wire (text and JSON lines) on a whole server.

kick, ban, unban, bans, mute, unmute, announce, whois and rehash as an
operator sees them; the invalid-command reply everyone else gets, whatever
they type; bans at connect and login, and their expiry on the clock; the
log of every action; bans and operators kept across a restart (SQLite).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any
from twisted.internet import defer
from twisted.logger import capturedLogs
from twisted.trial import unittest

from chatservice.commands import INVALID_COMMAND, OPERATOR_COMMANDS
from chatservice.moderation import RELOAD_SECONDS, BadBanTarget, UnknownOperator, ban_key, ban_target
from chatservice.reload import ReloadRefused
from chatservice.store.interface import Ban
from chatservice.store.local import LocalStore
from chatservice.store.sqlite import SQLiteStore
from chatservice.timefmt import format_timestamp
from tests.support import ChatHarness, Connection
from tests.test_protocol import HarnessTestCase

OPERATOR_LINES = (
    "kick hans", "kick", "kick hans too loud", "ban hans", "ban", "ban 10.0.0.0/99",
    "ban hans 2h spam", "unban 1", "unban", "bans", "bans now", "mute hans 10m",
    "mute hans forever", "mute", "unmute hans", "announce hi", "announce", "whois hans",
    "whois", "rehash", "rehash now", "KICK hans",
)
"""Operator command lines, good and bad: to a non-operator, each is an unknown command."""


class OperatorTestCase(HarnessTestCase):
    """yoda is an operator; hans, luke and leia are not."""

    def setUp(self) -> None:
        super().setUp()
        self.harness.store.set_operator("yoda", True)
        self.yoda, self.hans, self.luke = self.online("yoda", "hans", "luke")

    def ask(self, connection: Connection, line: str) -> list[str]:
        self.harness.clock.advance(0.5)  # (within the flood limits)
        connection.send(line)
        return connection.lines()

    def quiet(self, *connections: Connection) -> None:
        for connection in connections:
            connection.output()


class NotAnOperatorTests(OperatorTestCase):
    """To anyone but an operator, the operator commands do not exist."""

    def test_every_operator_line_is_an_unknown_command_in_text(self) -> None:
        self.assertEqual(self.ask(self.hans, "fly away"), [INVALID_COMMAND])
        for line in OPERATOR_LINES:
            self.assertEqual(self.ask(self.hans, line), [INVALID_COMMAND], line)
        self.assertEqual(self.yoda.lines(), [], "nothing happened to anyone")
        self.assertFalse(self.hans.closed)
        self.assertEqual(self.harness.store.bans(), [])

    def test_in_json_too_with_the_request_id(self) -> None:
        leia = self.harness.connect()
        self.connections.append(leia)
        leia.login_json("leia")
        self.harness.state.max_message_length = 10  # (too long is no clue either)
        unknown = {"type": "error", "code": "invalid_command", "message": INVALID_COMMAND}
        leia.send_json({"type": "fly", "id": 1})
        self.assertEqual(leia.json(), [{**unknown, "id": 1}])
        for n, request in enumerate(
            [
                {"type": "kick", "target": "hans"},
                {"type": "kick"},
                {"type": "ban", "target": "hans", "duration": "nonsense"},
                {"type": "mute", "target": "hans"},
                {"type": "announce", "message": "x" * 100},
                {"type": "whois", "target": "hans"},
                {"type": "bans"},
                {"type": "rehash"},
            ]
        ):
            self.harness.clock.advance(0.5)
            leia.send_json({**request, "id": n})
            self.assertEqual(leia.json(), [{**unknown, "id": n}], request)

    def test_help_does_not_list_them(self) -> None:
        lines = self.ask(self.hans, "help")
        for name in OPERATOR_COMMANDS:
            self.assertFalse(any(line.strip().startswith(name + " ") or line.strip() == name for line in lines), name)
        self.assertEqual(self.ask(self.hans, "help kick"), ["Error. There is no command kick (type help for the list)."])

    def test_attempts_are_not_counted_as_commands(self) -> None:
        """To the metrics, as to the user, a non-operator's operator command is no command."""
        commands = self.harness.state.metrics.commands
        self.ask(self.hans, "kick luke")
        self.ask(self.hans, "whois luke")
        self.assertNotIn("kick", commands)
        self.assertNotIn("whois", commands)
        self.ask(self.yoda, "whois luke")
        self.assertEqual(commands.get("whois"), 1)

    def test_attempts_are_logged(self) -> None:
        with capturedLogs() as logged:
            self.ask(self.hans, "ban luke 2h annoying")
        refused = [event for event in logged if event.get("action") == "ban"]
        self.assertEqual(len(refused), 1)
        self.assertEqual(
            {key: refused[0][key] for key in ("operator", "action", "target", "reason", "outcome")},
            {"operator": "hans", "action": "ban", "target": "luke", "reason": "annoying",
             "outcome": "not an operator"},
        )

    def test_revoked_while_online(self) -> None:
        """The store decides at each command: a revocation counts at once."""
        self.harness.store.set_operator("yoda", False)
        self.assertEqual(self.ask(self.yoda, "kick hans"), [INVALID_COMMAND])
        self.harness.store.set_operator("hans", True)
        self.assertEqual(self.ask(self.hans, "whois luke")[0][:len("luke from ")], "luke from ")


class HelpTests(OperatorTestCase):
    def test_operator_help_lists_them(self) -> None:
        lines = "\n".join(self.ask(self.yoda, "help"))
        for usage in ("kick <user> [<reason>]", "ban <user|address|cidr> [<duration>] [<reason>]",
                      "mute <user> <duration> [<reason>]", "announce <text>", "whois <user>", "rehash"):
            self.assertIn(usage, lines)
        self.assertEqual(self.ask(self.yoda, "help kick")[0], "kick <user> [<reason>]")

    def test_operator_gets_usage_errors(self) -> None:
        self.assertEqual(self.ask(self.yoda, "kick"), ["Error. Usage: kick <user> [<reason>]"])
        self.assertEqual(
            self.ask(self.yoda, "mute hans forever"),
            ["Error. <duration> is like 30s, 10m, 2h or 7d. Usage: mute <user> <duration> [<reason>]"],
        )
        self.assertEqual(
            self.ask(self.yoda, "ban 10.0.0.0/99"),
            ["Error. 10.0.0.0/99 is not an address or network (e.g. 192.0.2.0/24)."],
        )


class KickTests(OperatorTestCase):
    def test_kick_ends_the_session_with_a_notice(self) -> None:
        with capturedLogs() as logged:
            self.assertEqual(
                self.ask(self.yoda, "kick hans spamming the room"),
                ["hans logged out", "Kicked hans (reason: spamming the room)."],
            )
        self.assertEqual(
            self.hans.lines(), ["You have been kicked off this server by yoda (reason: spamming the room)."]
        )
        self.assertTrue(self.hans.closed)
        self.assertNotIn("hans", self.harness.state.sessions)
        self.assertEqual(self.luke.lines(), ["hans logged out"])
        done = [event for event in logged if event.get("outcome") == "done"]
        self.assertEqual(
            [(e["operator"], e["action"], e["target"], e["reason"]) for e in done],
            [("yoda", "kick", "hans", "spamming the room")],
        )

    def test_kick_over_json(self) -> None:
        obiwan = self.harness.connect()
        self.connections.append(obiwan)
        obiwan.login_json("obiwan")
        self.quiet(self.yoda)
        self.yoda.send("kick obiwan")
        self.assertEqual(
            obiwan.json(),
            [{"type": "disconnect", "reason": "kicked", "message": "You have been kicked off this server by yoda."}],
        )
        self.assertTrue(obiwan.closed)

    def test_refused(self) -> None:
        self.assertEqual(self.ask(self.yoda, "kick yoda"), ["Error. You cannot kick yourself."])
        self.assertEqual(self.ask(self.yoda, "kick leia"), ["Error. leia is not online."])
        self.assertEqual(self.ask(self.yoda, "kick vader"), ["Error. vader is not online."])

    def test_operator_may_kick_another_operator(self) -> None:
        self.harness.store.set_operator("hans", True)
        self.ask(self.yoda, "kick hans")
        self.assertTrue(self.hans.closed)


class BanTests(OperatorTestCase):
    def login(self, username: str, host: str | None = None) -> Connection:
        connection = self.harness.connect(host)
        self.connections.append(connection)
        connection.send(username)
        connection.send({"hans": "falcon", "luke": "jedi", "leia": "princess", "yoda": "wise"}[username])
        return connection

    def test_ban_user_for_a_while(self) -> None:
        now = self.harness.clock.seconds() + 0.5  # when ask sends it
        until = format_timestamp(now + 300)
        self.assertEqual(
            self.ask(self.yoda, "ban hans 5m spam"),
            ["hans logged out", f"Ban #1: user hans is banned until {until} (reason: spam); 1 session ended."],
        )
        self.assertEqual(
            self.hans.lines(), [f"You have been banned from this server by yoda until {until} (reason: spam)."]
        )
        self.assertTrue(self.hans.closed)
        self.assertEqual(self.luke.lines(), ["hans logged out"])
        self.assertEqual(
            self.harness.store.bans(), [Ban("user", "hans", "yoda", now, now + 300, "spam", 1)]
        )
        again = self.login("hans")
        self.assertTrue(
            again.lines()[-1].endswith(f"Error. You are banned from this server until {until} (reason: spam).")
        )
        self.assertTrue(again.closed)
        self.assertNotIn("hans", self.harness.state.sessions)
        # Five minutes later it has ended: hans logs in, and the ban is forgotten.
        self.harness.clock.advance(300)
        later = self.login("hans")
        self.assertIn("hans", self.harness.state.sessions)
        self.assertFalse(later.closed)
        self.assertEqual(self.ask(self.yoda, "bans")[-1], "No bans are in force.")
        self.assertEqual(self.harness.store.bans(), [])

    def test_ban_in_json_and_login_refusal_in_json(self) -> None:
        self.quiet(self.yoda)
        self.yoda.send("ban luke")
        luke = self.harness.connect()
        self.connections.append(luke)
        luke.send_json({"type": "login", "user": "luke", "password": "jedi", "id": 7})
        self.assertEqual(
            luke.json(),
            [{"type": "login", "success": False, "reason": "banned", "message": "Error. You are banned from this server for good.", "id": 7}],
        )
        self.assertTrue(luke.closed)

    def test_ban_address_ends_sessions_and_refuses_connections(self) -> None:
        leia = self.login("leia", "192.0.2.7")
        self.quiet(leia, self.yoda, self.hans, self.luke)
        self.assertEqual(
            self.ask(self.yoda, "ban 192.0.2.7 10m"),
            ["leia logged out", f"Ban #1: address 192.0.2.7 is banned until {format_timestamp(self.harness.clock.seconds() + 600)}; 1 session ended."],
        )
        self.assertTrue(leia.closed)
        self.assertIn("banned from this server by yoda", leia.output())
        refused = self.harness.connect("192.0.2.7")
        self.connections.append(refused)
        self.assertTrue(refused.closed)
        other = self.harness.connect("192.0.2.8")
        self.connections.append(other)
        self.assertFalse(other.closed)

    def test_ban_network(self) -> None:
        first = self.login("leia", "198.51.100.20")
        self.quiet(first, self.yoda)
        self.assertIn("network 198.51.100.0/24", self.ask(self.yoda, "ban 198.51.100.99/24 dodgy")[-1])
        self.assertTrue(first.closed)
        refused = self.harness.connect("198.51.100.200")
        self.connections.append(refused)
        self.assertTrue(refused.closed)
        self.assertEqual(self.harness.store.bans()[0].target, "198.51.100.0/24")

    def test_own_address_and_self_refused(self) -> None:
        host = self.yoda.connection.host
        self.assertEqual(self.ask(self.yoda, "ban yoda"), ["Error. You cannot ban yourself."])
        self.assertEqual(
            self.ask(self.yoda, f"ban {host}"), [f"Error. {host} includes your own address ({host})."]
        )
        self.assertEqual(self.ask(self.yoda, "ban vader"), ["Error. Invalid user vader."])
        self.assertEqual(self.harness.store.bans(), [])

    def test_unban_by_number_and_by_target_and_list(self) -> None:
        self.ask(self.yoda, "ban hans 1d")
        self.ask(self.yoda, "ban 203.0.113.0/24 spam")
        lines = self.ask(self.yoda, "bans")
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].startswith("#1 user hans, by yoda at "), lines[0])
        self.assertTrue(lines[1].endswith(", for good (reason: spam)"), lines[1])
        self.assertEqual(self.ask(self.yoda, "unban #1"), ["Removed 1 ban of 1."])
        self.assertEqual(self.ask(self.yoda, "unban 203.0.113.7/24"), ["Removed 1 ban of 203.0.113.0/24."])
        self.assertEqual(self.ask(self.yoda, "unban hans"), ["Error. There is no ban of hans."])
        self.assertEqual(self.harness.store.bans(), [])
        self.login("hans")
        self.assertIn("hans", self.harness.state.sessions)

    def test_bans_set_with_the_admin_tool_are_read_every_minute(self) -> None:
        """A ban added to the store by another program: enforced at the next reading."""
        moderation = self.harness.chat.state.moderation
        moderation.start()
        self.harness.store.add_ban(Ban("user", "luke", "chatservice-admin", self.harness.clock.seconds()))
        self.assertFalse(self.luke.closed)
        self.harness.clock.advance(RELOAD_SECONDS)
        self.assertTrue(self.luke.closed)
        self.assertEqual(self.ask(self.yoda, "bans")[-1][:len("#1 user luke, by chatservice-admin")], "#1 user luke, by chatservice-admin")
        moderation.stop()


class BanTargetTests(unittest.TestCase):
    def test_targets(self) -> None:
        self.assertEqual(ban_target("hans"), ("user", "hans"))
        self.assertEqual(ban_target("192.0.2.7"), ("address", "192.0.2.7"))
        self.assertEqual(ban_target("::ffff:192.0.2.7"), ("address", "192.0.2.7"))
        self.assertEqual(ban_target("192.0.2.7/32"), ("address", "192.0.2.7"))
        self.assertEqual(ban_target("192.0.2.7/24"), ("network", "192.0.2.0/24"))
        self.assertEqual(ban_target("2001:DB8::/32"), ("network", "2001:db8::/32"))

    def test_a_bad_network_is_the_modules_own_error(self) -> None:
        """Not a command-layer error: the operator's command and the admin socket each map it."""
        for parse in (ban_target, ban_key):
            with self.assertRaises(BadBanTarget) as caught:
                parse("10.0.0.0/99")
            self.assertEqual(str(caught.exception), "10.0.0.0/99 is not an address or network (e.g. 192.0.2.0/24)")
        self.assertEqual((ban_key("#3"), ban_key("3"), ban_key("hans")), (3, 3, "hans"))


class MuteTests(OperatorTestCase):
    def test_mute_refuses_every_kind_of_message_until_it_ends(self) -> None:
        until = format_timestamp(self.harness.clock.seconds() + 300)
        self.assertEqual(self.ask(self.yoda, "mute hans 5m flooding"), [f"hans is muted until {until} (reason: flooding)."])
        self.assertEqual(
            self.hans.lines(),
            [f"*** Server notice from yoda: You are muted until {until} (reason: flooding): your messages are refused meanwhile."],
        )
        refusal = f"Error. You are muted until {until} by yoda (reason: flooding); your message was not sent."
        self.ask(self.hans, "room create luke")
        for line in ("message luke hi", "send (luke yoda) hi", "broadcast hi", "room send 1 hi"):
            self.assertEqual(self.ask(self.hans, line), [refusal], line)
        self.assertEqual(self.luke.lines(), ["hans added you to room 1 with hans, luke."])
        self.assertEqual(sorted(self.ask(self.hans, "whoelse")), ["luke", "yoda"], "other commands work")
        self.harness.clock.advance(300)
        self.assertEqual(self.ask(self.hans, "message luke back"), ["Message delivered to luke."])
        self.assertEqual(self.harness.state.moderation.mutes, {})

    def test_unmute_and_json(self) -> None:
        self.quiet(self.yoda)
        self.yoda.send("mute hans 1h")
        self.quiet(self.yoda, self.hans)
        self.assertEqual(self.ask(self.yoda, "unmute hans"), ["hans is no longer muted."])
        self.assertEqual(self.ask(self.hans, "broadcast free")[0][:len("Broadcast message")], "Broadcast message")
        self.quiet(self.yoda)
        self.assertEqual(self.ask(self.yoda, "unmute hans"), ["Error. hans is not muted."])
        self.assertEqual(self.ask(self.yoda, "mute yoda 1h"), ["Error. You cannot do that to yourself."])
        self.assertEqual(self.ask(self.yoda, "mute vader 1h"), ["Error. Invalid user vader."])

    def test_muted_json_client_by_a_json_operator(self) -> None:
        self.harness.store.set_operator("leia", True)
        leia, obiwan = self.harness.connect(), self.harness.connect()
        self.connections += [leia, obiwan]
        leia.login_json("leia")
        obiwan.login_json("obiwan")
        leia.output()
        leia.send_json({"type": "mute", "target": "obiwan", "duration": 90, "id": "m"})
        [done] = leia.json()
        self.assertEqual((done["type"], done["action"], done["until"], done["id"]),
                         ("operator_done", "mute", self.harness.clock.seconds() + 90, "m"))
        self.assertEqual(obiwan.json()[-1]["type"], "server_notice")
        obiwan.send_json({"type": "message", "to": "hans", "message": "hi", "id": 2})
        [error] = obiwan.json()
        self.assertEqual((error["type"], error["code"], error["id"]), ("error", "muted", 2))


class AnnounceTests(OperatorTestCase):
    def test_everyone_gets_it_marked_as_a_server_notice(self) -> None:
        obiwan = self.harness.connect()
        self.connections.append(obiwan)
        obiwan.login_json("obiwan")
        self.ask(self.hans, "busy")
        self.ask(self.luke, "block yoda")
        self.ask(self.luke, "hide")
        self.quiet(self.yoda, self.hans, self.luke)
        self.assertEqual(self.ask(self.yoda, "announce Restart at 22:00"), ["Server notice sent to 3 users online."])
        for connection in (self.hans, self.luke):
            self.assertEqual(connection.lines(), ["*** Server notice from yoda: Restart at 22:00"])
        self.assertEqual(
            obiwan.json(),
            [{"type": "server_notice", "from": "yoda", "message": "Restart at 22:00", "timestamp": self.harness.clock.seconds()}],
        )


class WhoisTests(OperatorTestCase):
    def test_whois_local_user(self) -> None:
        self.harness.clock.advance(30)
        self.ask(self.hans, "busy")
        self.harness.clock.advance(65)
        lines = self.ask(self.yoda, "whois hans")
        self.assertEqual(
            lines,
            [
                f"hans from {self.hans.connection.host} (text, not encrypted)",
                f"  logged in at {format_timestamp(self.harness.state.sessions['hans'].logged_in_at)},"
                " idle 0h 01m 05s; busy",
            ],
        )
        self.assertEqual(self.ask(self.yoda, "whois leia"), ["Error. leia is not online."])

    def test_whois_json_of_a_telnet_client_and_an_operator(self) -> None:
        self.hans.send(b"\xff\xfd\x01")  # IAC DO ECHO: a telnet program
        self.hans.output()
        self.harness.store.set_operator("obiwan", True)
        obiwan = self.harness.connect()
        self.connections.append(obiwan)
        obiwan.login_json("obiwan")
        obiwan.send_json({"type": "whois", "target": "hans"})
        [report] = obiwan.json()
        self.assertEqual(
            {key: report[key] for key in ("type", "target", "client", "tls", "busy", "operator", "node", "idle")},
            {"type": "whois", "target": "hans", "client": "telnet", "tls": False, "busy": False,
             "operator": False, "node": None, "idle": 0.0},
        )
        self.assertIn("; operator", "\n".join(self.ask(self.yoda, "whois yoda")))


class RehashTests(OperatorTestCase):
    def test_not_available(self) -> None:
        self.harness.state.rehash = None
        self.assertEqual(
            self.ask(self.yoda, "rehash"),
            ["Error. Reloading the configuration is not available on this server."],
        )

    def test_reloader_called_with_who_asked(self) -> None:
        asked: list[str] = []

        def reload(operator: str) -> defer.Deferred[list[str]]:
            asked.append(operator)
            return defer.succeed(["ban file: 2 entries (was 1)", "certificates: unchanged"])

        self.harness.state.rehash = reload
        self.assertEqual(
            self.ask(self.yoda, "rehash"),
            ["Configuration reloaded:", "  ban file: 2 entries (was 1)", "  certificates: unchanged"],
        )
        self.assertEqual(asked, ["yoda"])

    def test_refused(self) -> None:
        """A reload refused (a bad file) is an error reply saying why; nothing was reloaded."""
        self.harness.state.rehash = lambda operator: defer.fail(
            ReloadRefused(["--ban-file bans.txt: 'x' does not appear to be an IPv4 or IPv6 network"])
        )
        self.assertEqual(
            self.ask(self.yoda, "rehash"),
            [
                "Error. Nothing was reloaded: --ban-file bans.txt: 'x' does not appear to be an"
                " IPv4 or IPv6 network; the previous settings stay in force."
            ],
        )

    def test_the_servers_reloader(self) -> None:
        """The server's own reloader answers an operator's ``rehash``."""
        self.harness.chat.service.serving = True
        reply = self.ask(self.yoda, "rehash")
        self.assertEqual(reply[0], "Configuration reloaded:")
        self.assertTrue(len(reply) > 1 and all(line.startswith("  ") for line in reply[1:]), reply)


class GrantedAtStartTests(unittest.TestCase):
    """``--operator NAME``: granted in the store at start; an unknown name stops the start."""

    def test_granted(self) -> None:
        harness = ChatHarness()
        self.addCleanup(harness.close_all)
        harness.state.moderation.granted = ("luke",)
        self.successResultOf(harness.state.load())
        self.assertEqual(harness.store.operators(), {"luke"})

    def test_unknown_name_refused(self) -> None:
        harness = ChatHarness()
        self.addCleanup(harness.close_all)
        harness.state.moderation.granted = ("vader",)
        failure = self.failureResultOf(harness.state.load(), UnknownOperator)
        self.assertIn("--operator vader: there is no account vader", str(failure.value))


class RestartTests(unittest.TestCase):
    """Bans and operators are in the store: a server started again on it has them."""

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="chat-ops-test-"))
        self.addCleanup(shutil.rmtree, self.directory, True)

    def server(self) -> ChatHarness:
        store = LocalStore(SQLiteStore(self.directory / "chat.sqlite3"))
        store.open()
        harness = ChatHarness(store=store)
        self.addCleanup(harness.close_all)
        self.addCleanup(store.close)
        return harness

    def test_ban_and_operator_survive_a_restart(self) -> None:
        first = self.server()
        first.state.store.set_operator("yoda", True)
        yoda, hans = first.online("yoda", "hans")
        yoda.send("ban hans 1d")
        self.assertIn("Ban #1: user hans", yoda.output())
        yoda.drop()
        hans.drop()
        first.state.store.close()

        second = self.server()
        hans = second.connect()
        hans.send("hans")
        hans.send("falcon")
        self.assertIn("Error. You are banned from this server until", hans.output())
        self.assertTrue(hans.closed)
        (yoda,) = second.online("yoda")
        yoda.send("bans")
        self.assertIn("#1 user hans, by yoda", yoda.output())
        hans.drop()
        yoda.drop()


class FakeCluster:
    """The other nodes, as the state sees them: one user (``vader``) on node ``b``; what is announced is kept."""

    name = "a"

    def __init__(self, reachable: bool = True) -> None:
        from chatservice.cluster.node import RemoteMember

        self.reachable = reachable
        self.actions: list[dict[str, Any]] = []
        info = {"n": "b", "t": 1_700_000_000.0, "h": "192.0.2.9", "k": "web", "s": True, "x": True}
        self.remote = {"vader": RemoteMember(self, "vader", info)}  # type: ignore[arg-type]

    def online(self, username: str) -> Any:
        return self.remote.get(username)

    def moderation(self, action: dict[str, Any]) -> bool:
        if self.reachable:
            self.actions.append(action)
        return self.reachable

    def deliver_remote(self, event: Any, sender: str, audience: Any, rule: Any, report: Any) -> Any:
        return defer.succeed(report)

    def release(self, member: Any) -> None:
        """Nothing to give back."""

    def seen(self, username: str, at: float) -> None:
        """Nothing to tell."""


class ClusteredTests(OperatorTestCase):
    """What an operator's node tells the others, and a user on another node."""

    def setUp(self) -> None:
        super().setUp()
        self.cluster = FakeCluster()
        self.harness.state.cluster = self.cluster  # type: ignore[assignment]
        self.addCleanup(setattr, self.harness.state, "cluster", None)

    def test_whois_names_the_node(self) -> None:
        self.assertEqual(
            self.ask(self.yoda, "whois vader"),
            [
                "vader from 192.0.2.9 (web, TLS)",
                f"  logged in at {format_timestamp(1_700_000_000.0)}, idle time unknown; hidden",
                "  on node b",
            ],
        )
        self.assertEqual(self.ask(self.yoda, "whois hans")[-1], "  on node a")

    def test_actions_are_announced(self) -> None:
        self.ask(self.yoda, "kick vader")
        self.ask(self.yoda, "ban 192.0.2.0/24 1h")
        self.ask(self.yoda, "mute luke 10m")
        self.ask(self.yoda, "unmute luke")
        self.ask(self.yoda, "unban 192.0.2.0/24")
        kinds = [action["do"] for action in self.cluster.actions]
        self.assertEqual(kinds, ["kick", "ban", "mute", "mute", "unban"])
        self.assertEqual(self.cluster.actions[0], {"do": "kick", "u": "vader", "by": "yoda", "reason": ""})
        self.assertEqual(self.cluster.actions[1]["ban"]["target"], "192.0.2.0/24")
        self.assertEqual(self.cluster.actions[3], {"do": "mute", "u": "luke", "until": None, "by": "yoda"})
        self.assertEqual(self.cluster.actions[4], {"do": "unban", "ids": [1]})

    def test_unban_of_a_ban_not_read_here_yet_is_announced(self) -> None:
        """A ban another node set (this one has not read it yet) is lifted on every node."""
        self.harness.store.add_ban(Ban("user", "vader", "leia", self.harness.clock.seconds()))
        self.assertEqual(self.ask(self.yoda, "unban #1"), ["Removed 1 ban of 1."])
        self.assertEqual(self.cluster.actions, [{"do": "unban", "ids": [1]}])

    def test_announced_actions_are_done_here(self) -> None:
        moderation = self.harness.state.moderation
        moderation.announced({"do": "kick", "u": "hans", "by": "leia", "reason": "r"})
        self.assertTrue(self.hans.closed)
        until = self.harness.clock.seconds() + 60
        moderation.announced({"do": "mute", "u": "luke", "until": until, "by": "leia", "reason": ""})
        self.assertEqual(self.ask(self.luke, "broadcast hi")[-1][:len("Error. You are muted")], "Error. You are muted")
        ban = {"id": 7, "kind": "user", "target": "luke", "by": "leia", "at": 1.0, "until": None, "reason": ""}
        moderation.announced({"do": "ban", "ban": ban})
        self.assertTrue(self.luke.closed)
        moderation.announced({"do": "unban", "ids": [7]})
        self.assertEqual(moderation.in_force(), [])

    def test_kick_on_an_unreachable_node(self) -> None:
        self.cluster.reachable = False
        self.assertEqual(
            self.ask(self.yoda, "kick vader"),
            ["Error. vader is on another server of this chat service, which cannot be reached right now; try again."],
        )


class ActivityTests(OperatorTestCase):
    """An operator command counts as activity for an operator only (to others it is unknown)."""

    def test_inactivity(self) -> None:
        timeout = self.harness.policy.timeout
        self.harness.clock.advance(timeout - 1)
        self.hans.send("kick luke")
        self.yoda.send("whois luke")
        self.harness.clock.advance(1)
        self.assertTrue(self.hans.closed, "a non-operator's kick is no activity")
        self.assertIn("logged out after", self.hans.output())
        self.assertFalse(self.yoda.closed, "an operator's whois is")
