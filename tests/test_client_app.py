"""The whole client against a fake server: logging in, commands, private chats, files, the end.

Each :class:`Harness` is one ``ChatClient`` whose server connection writes into
a ``StringTransport`` (the test plays the server by feeding JSON lines), whose
keyboard is a ``Console`` fed by the test, and whose peers are reached through
iosim pumps (private chats) and a simulated datagram network (files), all on
one ``task.Clock``.  The client logs in with SCRAM-SHA-256 (the test plays the
server's side with :class:`~chatservice.auth.scram.ScramServerExchange`), its
key derivation run at once on this thread unless a test says otherwise.
"""

from __future__ import annotations

import base64
import hmac
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, reactor, task, threads
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatservice.auth.credentials import Runner, run_here
from chatservice.auth.scram import (
    InvalidProof,
    ScramKeys,
    ScramServerExchange,
    derive_salted_password,
)
from chatservice.client import app, login
from chatservice.client.jsonlog import JsonTranscript
from chatservice.client.app import ChatClient, Phase
from chatservice.client.console import Console, Output
from chatservice.client.filetransfer import TransferSettings
from chatservice.client.peer import PeerFactory
from chatservice.client.server_connection import ServerConnection
from chatservice.client.style import timestamp
from chatservice.client.testing import DatagramNetwork
from tests.test_accounts import ManualRunner
from tests.test_client_peer import PeerNetwork

SETTINGS = TransferSettings(chunk_size=500, linger=1.0, idle_timeout=5.0, start_timeout=5.0)


class FakeEcho:
    def __init__(self) -> None:
        self.hidden = False
        self.history: list[str] = []

    def hide(self) -> None:
        self.hidden = True
        self.history.append("hide")

    def restore(self) -> None:
        if self.hidden:
            self.history.append("restore")
        self.hidden = False


class Harness:
    """One client, its fake server connection and its fake keyboard."""

    def __init__(
        self,
        test: unittest.TestCase,
        name: str,
        clock: Clock,
        peers: PeerNetwork,
        datagrams: DatagramNetwork,
        port: int,
        *,
        password_login: bool = False,
        run_in_thread: Runner = run_here,
        transcript: JsonTranscript | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        directory = tempfile.TemporaryDirectory(prefix=f"chat-client-{name}-")
        test.addCleanup(directory.cleanup)
        self.directory = Path(directory.name)
        self.downloads = self.directory / "downloads"
        self.downloads.mkdir()
        self.written: list[bytes] = []
        self.echo = FakeEcho()
        self.client = ChatClient(
            clock,
            Output(self.written.append, terminal=False, interactive=False),
            self.echo,  # type: ignore[arg-type]
            download_dir=self.downloads,
            connect_peer=peers.connect,
            transfer_settings=SETTINGS,
            progress_interval=1000,
            password_login=password_login,
            run_in_thread=run_in_thread,
        )
        self.client.p2p_port = port
        self.client.udp_port = port
        peers.listeners[port] = PeerFactory(self.client.private, clock)
        datagrams.attach(("127.0.0.1", port), self.client.files)
        self.console = Console(self.client.line_entered, self.client.input_ended)
        self.console_transport = StringTransport()
        self.console.makeConnection(self.console_transport)
        self.client.console = self.console
        self.console.pause()
        self.server_transport = StringTransport()
        self.server = ServerConnection(self.client, transcript)
        self.server.makeConnection(self.server_transport)
        self.server.dataReceived(b"Welcome to chatservice 0.1.0. Please log in.\r\nUsername: ")
        [hello] = self.requests()
        self.answer(hello, type="hello", version="0.1.0")
        self.status: list[int] = []
        self.client.finished.addCallback(self.status.append)

    # The keyboard and the screen ----------------------------------------------------

    def type(self, *lines: str) -> None:
        self.console.dataReceived("".join(line + "\n" for line in lines).encode("utf-8"))

    def lines(self) -> list[str]:
        text = b"".join(self.written).decode("utf-8")
        self.written.clear()
        return text.splitlines()

    # The server ---------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        data = self.server_transport.value().decode("utf-8")
        self.server_transport.clear()
        return [json.loads(line) for line in data.splitlines()]

    def receive(self, message: dict[str, Any]) -> None:
        self.server.dataReceived(json.dumps(message).encode("utf-8") + b"\n")

    def answer(self, request: dict[str, Any], **reply: Any) -> None:
        self.receive(dict(reply, id=request["id"]))

    def log_in(self, password: str = "pw") -> None:
        self.type(self.name, password)
        if self.client.scram:
            login, server_final = self.prove(*self.challenge(password))
            self.answer(login, type="login", success=True, user=self.name, server_final=server_final)
        else:
            [login] = self.requests()
            self.answer(login, type="login", success=True, user=self.name)
        self.answer_who()
        self.lines()

    def answer_who(self, *online: str) -> None:
        """Answer the quiet ``whoelse`` a client sends once logged in (for Tab completion)."""
        [who] = self.requests()
        assert who["type"] == "whoelse", who
        self.answer(who, type="userlist", users=list(online), onlinetype=True)

    def challenge(self, password: str) -> tuple[ScramServerExchange, ScramKeys]:
        """Answer the client's ``salt`` request as a server whose account has ``password``."""
        [salt] = self.requests()
        assert (salt["type"], salt["mechanism"]) == ("salt", "SCRAM-SHA-256"), salt
        exchange = ScramServerExchange(salt["message"])
        keys = scram_keys(password)
        self.answer(
            salt, type="salt", mechanism="SCRAM-SHA-256", message=exchange.server_first(keys),
            salt=base64.b64encode(keys.salt).decode("ascii"), iterations=keys.iterations,
        )
        return exchange, keys

    def prove(self, exchange: ScramServerExchange, keys: ScramKeys) -> tuple[dict[str, Any], str]:
        """The client's SCRAM ``login`` request, and the server-final message it earns.

        :raises InvalidProof: the client typed another password than ``keys``'.
        """
        [login] = self.requests()
        assert (login["type"], login["mechanism"]) == ("login", "SCRAM-SHA-256"), login
        return login, exchange.verify_client_final(login["message"], keys)

    def close(self, reason: Failure | None = None) -> None:
        if not self.server_transport.disconnected:
            self.server_transport.disconnected = True
            self.server.connectionLost(reason or Failure(ConnectionDone()))


def stamp(clock: Clock) -> str:
    """The time stamp a message shown now gets."""
    return timestamp(clock.seconds())


_KEYS: dict[str, ScramKeys] = {}


def scram_keys(password: str) -> ScramKeys:
    """The SCRAM keys of ``password`` (derived once per test run: PBKDF2 is slow)."""
    if password not in _KEYS:
        _KEYS[password] = ScramKeys.derive(password)
    return _KEYS[password]


class ClientTestCase(unittest.TestCase):
    password_login = False
    """Whether the harnesses' clients log in with the password itself (``--password-login``)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_795_282_200)
        self.peers = PeerNetwork(self.clock)
        self.datagrams = DatagramNetwork(self.clock)
        self.harnesses: list[Harness] = []

    def harness(self, name: str, **options: Any) -> Harness:
        options.setdefault("password_login", self.password_login)
        harness = Harness(
            self, name, self.clock, self.peers, self.datagrams, 6000 + len(self.harnesses), **options
        )
        self.harnesses.append(harness)
        return harness

    def tearDown(self) -> None:
        for harness in self.harnesses:
            harness.close()
        self.peers.flush()
        self.datagrams.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def assertPasswordLogin(self, harness: Harness, password: str, request_id: int) -> None:
        """The next request is a password login (with the peer ports); accepting it logs in."""
        [request] = harness.requests()
        self.assertEqual(request, {
            "type": "login", "user": harness.name, "password": password,
            "p2p_port": harness.client.p2p_port, "udp_port": harness.client.udp_port, "id": request_id,
        })
        harness.answer(request, type="login", success=True, user=harness.name)
        self.assertEqual(
            harness.lines(), [f"Welcome to chatservice, {harness.name}! Type help for the list of commands."]
        )
        self.assertIs(harness.client.phase, Phase.ONLINE)

    def settle(self, seconds: float = 0.0) -> None:
        """Move private chat bytes and datagrams along for ``seconds`` (and at least once)."""
        end = self.clock.seconds() + seconds
        while True:
            self.peers.flush()
            if self.clock.seconds() >= end and self.datagrams.idle():
                return
            self.clock.advance(0.001)


class LoginTests(ClientTestCase):
    """What holds for both logins (:class:`PasswordLoginTests` runs these again).

    A refusal comes as the answer to the first request: ``salt``, or ``login``.
    """

    def test_password_is_not_echoed(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda")
        if yoda.client.scram:
            # SCRAM: the name goes first, the password is asked once challenged.
            self.assertFalse(yoda.echo.hidden)
            yoda.challenge("wise")
        self.assertTrue(yoda.echo.hidden)
        yoda.type("wise")
        self.assertFalse(yoda.echo.hidden)
        self.assertEqual(yoda.echo.history, ["hide", "restore"])

    def test_locked_account_ends_the_client(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wrong")
        [first] = yoda.requests()
        yoda.answer(first, type="login", success=False, reason="locked",
                    message="Invalid Password. Your account has been blocked after too many failures. Please try again later")
        yoda.close()
        self.assertEqual(
            yoda.lines(),
            ["Invalid Password. Your account has been blocked after too many failures. Please try again later"],
        )
        self.assertEqual(yoda.status, [app.EXIT_LOST])

    def test_error_reply_to_login(self) -> None:
        yoda = self.harness("yoda")
        # With SCRAM the error answers the name (the password is not asked yet).
        yoda.type(*(("yoda",) if yoda.client.scram else ("yoda", "wise")))
        [first] = yoda.requests()
        yoda.answer(first, type="error", code="missing_field", message="Bad login.")
        self.assertEqual(yoda.lines(), ["Bad login."])
        self.assertIs(yoda.client.phase, Phase.USERNAME)
        self.assertEqual(yoda.requests(), [])

    def test_end_of_input_before_login(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda")
        yoda.console.readConnectionLost()
        self.assertTrue(yoda.server_transport.disconnecting)
        self.assertFalse(yoda.echo.hidden)
        yoda.close()
        self.assertEqual(yoda.lines(), [])
        self.assertEqual(yoda.status, [app.EXIT_LOST])

    def test_giving_up_closes_the_server_connection(self) -> None:
        # main() gives up after connecting when the peer ports cannot be opened.
        yoda = self.harness("yoda")
        yoda.client.give_up("Error. Could not listen for other clients on 127.0.0.1: taken.")
        self.assertTrue(yoda.server_transport.disconnecting)
        yoda.close()
        self.assertEqual(yoda.lines(), ["Error. Could not listen for other clients on 127.0.0.1: taken."])
        self.assertEqual(yoda.status, [app.EXIT_LOST])


class PasswordLoginTests(LoginTests):
    """``--password-login``: the login as it was before SCRAM-SHA-256."""

    password_login = True

    def test_login_request_carries_the_peer_ports(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise")
        self.assertPasswordLogin(yoda, "wise", 1)
        self.assertEqual(yoda.client.private.username, "yoda")

    def test_lines_typed_during_login_wait_for_it(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise", "whoelse", "message hans hi")
        [login] = yoda.requests()
        yoda.answer(login, type="login", success=True, user="yoda")
        # The quiet whoelse (for Tab completion), then the typed one.
        self.assertEqual(yoda.requests(), [{"type": "whoelse", "id": 2}, {"type": "whoelse", "id": 3}])

    def test_wrong_password_asks_for_the_password_again(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wrong", "wise")
        [first] = yoda.requests()
        yoda.answer(first, type="login", success=False, reason="wrong_password",
                    message="Invalid Password. Please try again")
        self.assertEqual(yoda.lines(), ["Invalid Password. Please try again"])
        [second] = yoda.requests()
        self.assertEqual((second["user"], second["password"]), ("yoda", "wise"))

    def test_unknown_user_asks_for_the_name_again(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("vader", "dark", "yoda", "wise")
        [first] = yoda.requests()
        yoda.answer(first, type="login", success=False, reason="unknown_user",
                    message="Error. Unknown user vader. Please try again.")
        [probe] = yoda.requests()
        yoda.answer(probe, type="username_register_status", user="vader", taken=True)
        [second] = yoda.requests()
        self.assertEqual(second["user"], "yoda")

    def test_blank_user_name_is_asked_again(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("", "  ", "yoda", "wise")
        [login] = yoda.requests()
        self.assertEqual(login["user"], "yoda")



class ScramLoginTests(ClientTestCase):
    """The default login: SCRAM-SHA-256, checking the server's signature."""

    def test_login_never_sends_the_password_and_checks_the_server(self) -> None:
        stream = io.StringIO()
        yoda = self.harness("yoda", transcript=JsonTranscript(stream, self.clock))
        yoda.type("yoda", "wise")
        sent = yoda.server_transport.value()
        exchange, keys = yoda.challenge("wise")
        self.assertTrue(exchange.client_first.bare.startswith("n=yoda,r="))
        final, server_final = yoda.prove(exchange, keys)
        self.assertEqual(
            {k: v for k, v in final.items() if k != "message"},
            {"type": "login", "mechanism": "SCRAM-SHA-256", "p2p_port": 6000, "udp_port": 6000, "id": 2},
        )
        sent += json.dumps(final).encode("utf-8")
        yoda.answer(final, type="login", success=True, user="yoda", guest=False, server_final=server_final)
        self.assertEqual(yoda.lines(), ["Welcome to chatservice, yoda! Type help for the list of commands."])
        self.assertIs(yoda.client.phase, Phase.ONLINE)
        self.assertEqual(yoda.client.private.username, "yoda")
        # The transcript keeps the SCRAM messages as they are: no secret in them.
        recorded = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
        self.assertIn(final, recorded)
        salted = derive_salted_password("wise", keys.salt, keys.iterations)
        for secret in (b"wise", salted, base64.b64encode(salted), salted.hex().encode("ascii")):
            self.assertNotIn(secret, sent)
            self.assertNotIn(secret, stream.getvalue().encode("utf-8"))
        self.assertNotIn("password", stream.getvalue())

    def test_input_waits_while_the_keys_are_derived(self) -> None:
        runner = ManualRunner()
        yoda = self.harness("yoda", run_in_thread=runner)
        yoda.type("yoda", "wise", "whoelse")
        self.assertFalse(yoda.echo.hidden)
        exchange, keys = yoda.challenge("wise")
        self.assertEqual(len(runner.calls), 1)
        self.assertEqual(yoda.requests(), [])
        self.assertEqual(yoda.console_transport.producerState, "paused")
        runner.run_next()
        final, server_final = yoda.prove(exchange, keys)
        yoda.answer(final, type="login", success=True, user="yoda", server_final=server_final)
        self.assertEqual(yoda.requests(), [{"type": "whoelse", "id": 3}, {"type": "whoelse", "id": 4}])

    def test_wrong_password_asks_for_the_password_again(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wrong", "wise")
        exchange, keys = yoda.challenge("wise")
        [final] = yoda.requests()
        self.assertRaises(InvalidProof, exchange.verify_client_final, final["message"], keys)
        yoda.answer(final, type="login", success=False, reason="wrong_password",
                    message="Invalid Password. Please try again")
        self.assertEqual(yoda.lines(), ["Invalid Password. Please try again"])
        again, keys = yoda.challenge("wise")
        self.assertNotEqual(again.nonce, exchange.nonce)
        final, server_final = yoda.prove(again, keys)
        yoda.answer(final, type="login", success=True, user="yoda", server_final=server_final)
        self.assertIs(yoda.client.phase, Phase.ONLINE)

    def test_refusals_of_the_salt_request_are_shown_as_before(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("vader")
        [salt] = yoda.requests()
        self.assertTrue(salt["message"].startswith("n,,n=vader,r="))
        yoda.answer(salt, type="login", success=False, reason="unknown_user",
                    message="Error. Unknown user vader. Please try again.")
        [probe] = yoda.requests()
        self.assertEqual(probe, {"type": "register", "user": "vader", "id": 2})
        self.assertFalse(yoda.echo.hidden)  # no password was asked for
        yoda.answer(probe, type="register_status", status=False, user="vader", code="registration_disabled",
                    additional_info="Error. This server does not take new accounts.")
        self.assertEqual(yoda.lines(), ["Error. Unknown user vader. Please try again."])
        yoda.type("yoda")
        [salt] = yoda.requests()
        yoda.answer(salt, type="login", success=False, reason="blocked", retry_after=9,
                    message="Your account is blocked due to multiple login failures. Please try again later")
        self.assertEqual(
            yoda.lines(),
            ["Your account is blocked due to multiple login failures. Please try again in 9 seconds."],
        )
        self.assertIs(yoda.client.phase, Phase.USERNAME)
        self.assertEqual(yoda.requests(), [])

    def test_account_without_keys_falls_back_to_the_password(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise")
        [salt] = yoda.requests()
        yoda.answer(salt, type="login", success=False, reason="scram_unavailable",
                    message="Error. yoda has no SCRAM keys yet.")
        self.assertEqual(yoda.lines(), [login.FALLBACK_LINES[login.NO_KEYS]])
        self.assertPasswordLogin(yoda, "wise", 2)
        self.assertTrue(yoda.client.scram, "the next account may have keys")

    def test_server_without_scram_falls_back_to_the_password(self) -> None:
        for code in sorted(login.OLD_SERVER_ERRORS):
            yoda = self.harness("yoda")
            yoda.type("yoda", "wrong")
            [salt] = yoda.requests()
            yoda.answer(salt, type="error", code=code, message="Error. Invalid command (type help for the list)")
            self.assertEqual(yoda.lines(), [login.FALLBACK_LINES[login.OLD_SERVER]], code)
            [first] = yoda.requests()
            self.assertEqual((first["type"], first["password"]), ("login", "wrong"))
            yoda.answer(first, type="login", success=False, reason="wrong_password",
                        message="Invalid Password. Please try again")
            yoda.type("wise")
            [second] = yoda.requests()
            self.assertEqual((second["type"], second["password"]), ("login", "wise"), "no salt again")

    def assertDistrusted(self, yoda: Harness, line: str) -> None:
        """The client said ``line``, closed the connection, ended with 1, and never went on."""
        self.assertEqual(yoda.lines(), [line])
        self.assertTrue(yoda.server_transport.disconnecting)
        self.assertEqual(yoda.status, [app.EXIT_LOST])
        self.assertIs(yoda.client.phase, Phase.FINISHED)
        self.assertFalse(yoda.echo.hidden)
        yoda.close()
        yoda.type("whoelse")
        self.assertEqual(yoda.requests(), [])
        self.assertEqual(yoda.lines(), [])

    def test_forged_server_signature_closes_the_connection(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise")
        login_request, _server_final = yoda.prove(*yoda.challenge("wise"))
        forged = "v=" + base64.b64encode(bytes(32)).decode("ascii")
        yoda.answer(login_request, type="login", success=True, user="yoda", server_final=forged)
        self.assertDistrusted(yoda, login.IMPOSTOR)

    def test_missing_server_signature_closes_the_connection(self) -> None:
        for answer in ({"type": "login", "success": True, "user": "yoda"}, {"type": "login", "success": True},
                       {"type": "userlist", "users": []}):
            yoda = self.harness("yoda")
            yoda.type("yoda", "wise")
            login_request, _server_final = yoda.prove(*yoda.challenge("wise"))
            yoda.answer(login_request, **answer)
            self.assertDistrusted(yoda, login.IMPOSTOR)

    def test_server_with_other_keys_is_found_out(self) -> None:
        """An impostor that accepts any proof can only sign with keys of another password."""
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise")
        [salt] = yoda.requests()
        exchange = ScramServerExchange(salt["message"])
        guess = scram_keys("a guess")
        server_first = exchange.server_first(guess)
        yoda.answer(salt, type="salt", message=server_first)
        [final] = yoda.requests()
        proof = exchange.parse_client_final(final["message"])
        auth_message = f"{exchange.client_first.bare},{server_first},{proof.without_proof}"
        signature = hmac.digest(guess.server_key, auth_message.encode("utf-8"), "sha256")
        yoda.answer(final, type="login", success=True, user="yoda",
                    server_final="v=" + base64.b64encode(signature).decode("ascii"))
        self.assertDistrusted(yoda, login.IMPOSTOR)

    def test_unusable_challenge_closes_the_connection(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise")
        [salt] = yoda.requests()
        yoda.answer(salt, type="salt", message="r=not-our-nonce,s=c2FsdA==,i=4096")
        [line] = yoda.lines()
        self.assertTrue(line.startswith("Error. The server's SCRAM-SHA-256 challenge is not valid ("), line)
        self.assertTrue(yoda.server_transport.disconnecting)
        self.assertEqual(yoda.status, [app.EXIT_LOST])

    def test_unexpected_answer_to_salt_closes_the_connection(self) -> None:
        yoda = self.harness("yoda")
        yoda.type("yoda", "wise")
        [salt] = yoda.requests()
        yoda.answer(salt, type="userlist", users=[])
        self.assertEqual(
            yoda.lines(),
            ["Error. The server answered the SCRAM-SHA-256 login with 'userlist', not a challenge."
             " Closing the connection."],
        )
        self.assertEqual(yoda.status, [app.EXIT_LOST])
        self.assertNotIn(b"wise", yoda.server_transport.value())

    def test_connection_lost_while_the_keys_are_derived(self) -> None:
        runner = ManualRunner()
        yoda = self.harness("yoda", run_in_thread=runner)
        yoda.type("yoda", "wise")
        yoda.challenge("wise")
        yoda.close()
        runner.run_next()
        self.assertEqual(yoda.lines(), ["Error. The server closed the connection."])
        self.assertEqual(yoda.status, [app.EXIT_LOST])

    @defer.inlineCallbacks
    def test_keys_are_derived_in_a_thread(self) -> Any:
        used: list[threading.Thread] = []

        def in_thread(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            def run() -> Any:
                used.append(threading.current_thread())
                return f(*args)

            return threads.deferToThread(run)

        yoda = self.harness("yoda", run_in_thread=in_thread)
        self.assertIs(yoda.client.run_in_thread, in_thread)
        yoda.type("yoda", "wise")
        exchange, keys = yoda.challenge("wise")
        deadline = time.monotonic() + 10
        while not yoda.server_transport.value() and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.01, lambda: None)
        login_request, server_final = yoda.prove(exchange, keys)
        yoda.answer(login_request, type="login", success=True, user="yoda", server_final=server_final)
        self.assertIs(yoda.client.phase, Phase.ONLINE)
        self.assertEqual(len(used), 1)
        self.assertIsNot(used[0], threading.main_thread())

    def test_the_default_runner_is_a_thread(self) -> None:
        client = app.ChatClient(
            self.clock, Output(lambda data: None, terminal=False, interactive=False),
            FakeEcho(),  # type: ignore[arg-type]
            download_dir=Path("."), connect_peer=self.peers.connect,
        )
        self.assertIs(client.run_in_thread, threads.deferToThread)
        self.assertTrue(client.scram)


class CommandTests(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.yoda = self.harness("yoda")
        self.yoda.log_in()

    def test_server_commands_with_the_same_words(self) -> None:
        self.yoda.type("message hans Hey Dude")
        [request] = self.yoda.requests()
        self.assertEqual(request, {"type": "message", "to": "hans", "message": "Hey Dude", "id": 4})
        self.yoda.answer(request, type="message_status", to="hans", stored=True)
        self.assertEqual(self.yoda.lines(), ["hans is offline; your message will be delivered when they log in."])
        self.yoda.type("room create hans luke")
        [request] = self.yoda.requests()
        self.assertEqual(request, {"type": "room_create", "members": ["hans", "luke"], "id": 5})

    def test_unknown_command_sends_nothing(self) -> None:
        self.yoda.type("dance", "message hans")
        self.assertEqual(self.yoda.requests(), [])
        self.assertEqual(
            self.yoda.lines(),
            ["Error. Invalid command (type help for the list)", "Error. Usage: message <user> <text>"],
        )

    def test_output_keeps_the_order_of_the_input(self) -> None:
        self.yoda.type("whoelse", "dance", "block hans")
        [whoelse] = self.yoda.requests()
        self.assertEqual(self.yoda.lines(), [])
        self.yoda.answer(whoelse, type="userlist", users=["hans"], onlinetype=True)
        [block] = self.yoda.requests()
        self.yoda.answer(block, type="error", code="invalid_user", message="Error. Invalid user hans.")
        self.assertEqual(
            self.yoda.lines(),
            ["hans", "Error. Invalid command (type help for the list)", "Error. Invalid user hans."],
        )

    def test_help_adds_the_clients_own_commands(self) -> None:
        self.yoda.type("help")
        [request] = self.yoda.requests()
        self.yoda.answer(request, type="help", commands=[
            {"usage": "whoelse", "summary": "list the other users online now"},
            {"usage": "startprivate <user>", "summary": "(chat-client)"},
        ])
        lines = self.yoda.lines()
        self.assertEqual(lines[0], "Commands:")
        self.assertTrue(lines[1].strip().startswith("whoelse"))
        self.assertIn("start a private chat with <user>", lines[2])
        # A summary too long for 80 columns goes on under itself (indented further).
        entries = [line for line in lines[3:] if not line.startswith("   ")]
        self.assertEqual([line.split()[0] for line in entries], ["private", "stopprivate", "sendfile", "accept", "decline"])
        self.assertTrue(all(len(line) <= 80 for line in lines), lines)

    def test_help_keeps_the_servers_other_names(self) -> None:
        self.yoda.type("help")
        [request] = self.yoda.requests()
        self.yoda.answer(request, type="help", commands=[
            {"usage": "whoelse", "summary": "list the other users online now"},
        ], aliases={"who": "whoelse"})
        self.assertIn("who = whoelse", " ".join(self.yoda.lines()))

    def test_passwd_alone_asks_as_telnet_does(self) -> None:
        asked: list[tuple[str, bool]] = []
        self.yoda.client.output.prompt = lambda text, secret=False: asked.append((text, secret))  # type: ignore[method-assign]
        self.yoda.type("passwd")
        self.assertEqual(self.yoda.requests(), [])
        self.assertEqual(asked, [("Old password: ", True)])
        self.yoda.type("old-one", "new-one", "typo")
        self.assertEqual(
            asked[1:], [("New password: ", True), ("Repeat the password: ", True), ("New password: ", True)]
        )
        self.assertEqual(self.yoda.requests(), [])
        self.assertIn("Error. The passwords differ; try again.", self.yoda.lines())
        self.yoda.type("new-one", "new-one")
        [request] = self.yoda.requests()
        self.assertEqual(
            {k: v for k, v in request.items() if k != "id"}, {"type": "passwd", "old": "old-one", "new": "new-one"}
        )
        self.yoda.answer(request, type="passwd_status", status=True)
        self.assertIn("Your password has been changed.", self.yoda.lines())

    def test_unsolicited_messages_are_shown(self) -> None:
        self.yoda.receive({"type": "message", "from": "hans", "message": "hi", "timestamp": 1, "offline": False})
        self.yoda.receive({"type": "user_notification", "user": "luke", "status": True})
        self.assertEqual(self.yoda.lines(), [f"{stamp(self.clock)} hans: hi", "luke logged in"])

    def test_private_without_a_session(self) -> None:
        self.yoda.type("private hans hi", "stopprivate hans")
        self.assertEqual(self.yoda.requests(), [])
        self.assertEqual(
            self.yoda.lines(),
            ["Error. Private messaging to hans not enabled", "Error. Private messaging with hans is not active."],
        )

    def test_private_message_too_long(self) -> None:
        self.yoda.type("private hans " + "x" * 9000)
        self.assertEqual(self.yoda.lines(), ["Error. Private messages are limited to 8191 bytes."])

    def test_startprivate_refused_by_the_server(self) -> None:
        self.yoda.type("startprivate hans")
        [request] = self.yoda.requests()
        self.assertEqual(request, {"type": "startprivate", "target": "hans", "id": 4})
        self.yoda.answer(request, type="error", code="blocked", message="Error. hans has blocked you.")
        self.assertEqual(self.yoda.lines(), ["Error. hans has blocked you."])

    def test_startprivate_incomplete_answer(self) -> None:
        self.yoda.type("startprivate hans")
        [request] = self.yoda.requests()
        self.yoda.answer(request, type="private_address", user="hans", host="127.0.0.1", port="x", token="t")
        self.assertEqual(self.yoda.lines(), ["Error. The server's answer to startprivate was incomplete."])

    def test_sendfile_of_a_missing_file(self) -> None:
        self.yoda.type(f"sendfile hans {self.yoda.directory / 'nope.bin'}")
        self.assertEqual(self.yoda.requests(), [])
        [line] = self.yoda.lines()
        self.assertTrue(line.startswith("Error. cannot read "), line)

    def test_sendfile_refused_by_the_server(self) -> None:
        path = self.yoda.directory / "f.bin"
        path.write_bytes(b"abc")
        self.yoda.type(f"UPD hans {path}")
        [request] = self.yoda.requests()
        self.assertEqual(request, {"type": "sendfile", "to": "hans", "filename": "f.bin", "size": 3, "id": 4})
        self.yoda.answer(request, type="error", code="no_udp_port",
                         message="Error. hans is not using a client that accepts files.")
        self.assertEqual(self.yoda.lines(), ["Error. hans is not using a client that accepts files."])

    def test_incomplete_file_announcement_is_ignored(self) -> None:
        self.yoda.receive({"type": "file_incoming", "from": "hans", "filename": "x", "size": "big", "token": "t"})
        self.assertEqual(self.yoda.lines(), [])
        self.assertEqual(self.yoda.client.files.active(), [])


class EndingTests(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.yoda = self.harness("yoda")
        self.yoda.log_in()

    def test_logout(self) -> None:
        self.yoda.type("logout")
        [request] = self.yoda.requests()
        self.yoda.answer(request, type="disconnect", reason="logout", message="Goodbye, yoda!")
        self.yoda.close()
        self.assertEqual(self.yoda.lines(), ["Goodbye, yoda!"])
        self.assertEqual(self.yoda.status, [app.EXIT_OK])

    def test_end_of_input_logs_out(self) -> None:
        self.yoda.console.readConnectionLost()
        [request] = self.yoda.requests()
        self.assertEqual(request, {"type": "logout", "id": 4})

    def test_timeout(self) -> None:
        self.yoda.receive({"type": "disconnect", "reason": "timeout",
                           "message": "You have been logged out after 600 seconds of inactivity."})
        self.yoda.close()
        self.assertEqual(self.yoda.lines(), ["You have been logged out after 600 seconds of inactivity."])
        self.assertEqual(self.yoda.status, [app.EXIT_TIMEOUT])

    def test_shutdown(self) -> None:
        self.yoda.receive({"type": "shutdown", "message": "The server is shutting down."})
        self.yoda.close()
        self.assertEqual(self.yoda.lines(), ["The server is shutting down."])
        self.assertEqual(self.yoda.status, [app.EXIT_SHUTDOWN])

    def test_other_goodbyes(self) -> None:
        self.yoda.receive({"type": "disconnect", "reason": "flood", "message": "Too fast."})
        self.yoda.close()
        self.assertEqual(self.yoda.status, [app.EXIT_LOST])

    def test_dropped_connection(self) -> None:
        self.yoda.close(Failure(ConnectionLost("reset by peer")))
        self.assertEqual(
            self.yoda.lines(),
            ["Error. The connection to the server was lost."],
        )
        self.assertEqual(self.yoda.status, [app.EXIT_LOST])

    def test_closed_without_a_goodbye(self) -> None:
        self.yoda.close()
        self.assertEqual(self.yoda.lines(), ["Error. The server closed the connection."])
        self.assertEqual(self.yoda.status, [app.EXIT_LOST])

    def test_interrupted(self) -> None:
        self.yoda.client.interrupt()
        self.assertTrue(self.yoda.server_transport.disconnecting)
        self.assertEqual(self.yoda.lines(), ["Interrupted."])
        self.assertEqual(self.yoda.status, [app.EXIT_INTERRUPTED])
        self.yoda.client.interrupt()
        self.yoda.close()
        self.assertEqual(self.yoda.status, [app.EXIT_INTERRUPTED])

    def test_exit_status_table(self) -> None:
        self.assertEqual(app.exit_status({"type": "disconnect", "reason": "logout"}), 0)
        self.assertEqual(app.exit_status({"type": "disconnect", "reason": "timeout"}), 3)
        self.assertEqual(app.exit_status({"type": "disconnect", "reason": "shutdown"}), 4)
        self.assertEqual(app.exit_status({"type": "shutdown"}), 4)
        self.assertEqual(app.exit_status({"type": "banned"}), 1)
        self.assertEqual(app.exit_status({"type": "outdated_client"}), 1)


class TwoClientsTests(ClientTestCase):
    """yoda and hans, with the test passing the server's notes between them."""

    def setUp(self) -> None:
        super().setUp()
        self.yoda = self.harness("yoda")
        self.hans = self.harness("hans")
        self.yoda.log_in()
        self.hans.log_in()

    def start_private(self) -> None:
        self.yoda.type("startprivate hans")
        [request] = self.yoda.requests()
        self.hans.receive({"type": "private_request", "from": "yoda", "token": "tok-1"})
        self.yoda.answer(request, type="private_address", user="hans", host="127.0.0.1", port=6001, token="tok-1")
        self.settle()
        self.assertEqual(self.yoda.lines(), ["Waiting for hans to accept the private chat."])
        self.assertEqual(
            self.hans.lines(),
            ["yoda wants to chat privately with you: type accept or decline (within 20 s)."],
        )
        self.hans.type("accept")
        self.settle()
        self.assertEqual(self.yoda.lines(), ["Private messaging with hans started."])
        self.assertEqual(
            self.hans.lines(),
            ["Accepted a private chat from yoda.", "Private messaging with yoda started."],
        )

    def test_private_chat(self) -> None:
        self.start_private()
        self.yoda.type("private hans this goes straight to hans")
        self.settle()
        self.assertEqual(self.hans.lines(), [f"{stamp(self.clock)} yoda(private): this goes straight to hans"])
        self.assertEqual(self.yoda.requests(), [])
        self.hans.type("private yoda back")
        self.settle()
        self.assertEqual(self.yoda.lines(), [f"{stamp(self.clock)} hans(private): back"])

    def test_startprivate_twice(self) -> None:
        self.start_private()
        self.yoda.type("startprivate hans")
        self.assertEqual(self.yoda.lines(), ["Error. Private messaging with hans is already active."])
        self.assertEqual(self.yoda.requests(), [])

    def test_stopprivate(self) -> None:
        self.start_private()
        self.hans.type("stopprivate yoda")
        self.settle()
        self.assertEqual(self.hans.lines(), ["Private messaging with yoda stopped."])
        self.assertEqual(self.yoda.lines(), ["Private messaging with hans ended."])
        self.yoda.type("private hans hello?")
        self.assertEqual(self.yoda.lines(), ["Error. Private messaging to hans not enabled"])

    def test_logout_closes_private_sessions(self) -> None:
        self.start_private()
        self.yoda.type("logout")
        [request] = self.yoda.requests()
        self.yoda.answer(request, type="disconnect", reason="logout", message="Goodbye, yoda!")
        self.yoda.close()
        self.settle()
        self.assertEqual(self.yoda.lines(), ["Goodbye, yoda!", "Private messaging with hans ended."])
        self.assertEqual(self.hans.lines(), ["Private messaging with yoda ended."])
        self.assertEqual(self.yoda.status, [app.EXIT_OK])

    def test_peer_unreachable(self) -> None:
        self.yoda.type("startprivate hans")
        [request] = self.yoda.requests()
        self.yoda.answer(request, type="private_address", user="hans", host="127.0.0.1", port=6999, token="t")
        [line] = self.yoda.lines()
        self.assertTrue(line.startswith("Error. Could not start private messaging with hans: could not connect to hans"), line)

    def send_file(self, size: int, command: str = "sendfile", accept: bool = True) -> Path:
        path = self.yoda.directory / "lecture 1.bin"
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        self.yoda.type(f"{command} hans {path}")
        [request] = self.yoda.requests()
        self.assertEqual((request["filename"], request["size"]), ("lecture 1.bin", size))
        self.hans.receive({"type": "file_incoming", "from": "yoda", "filename": "lecture 1.bin", "size": size, "token": "tok-f"})
        self.yoda.answer(request, type="file_address", user="hans", host="127.0.0.1", port=6001, token="tok-f")
        if accept:
            self.hans.type("accept")
        return path

    def test_file_transfer(self) -> None:
        path = self.send_file(100_000)
        self.assertEqual(self.yoda.lines(), ["Sending lecture 1.bin (100.0 kB) to hans."])
        self.assertEqual(
            self.hans.lines(),
            [
                "yoda is sending you lecture 1.bin (100.0 kB): type accept or decline (within 20 s).",
                "Accepted lecture 1.bin from yoda.",
            ],
        )
        self.settle(2)
        [sent] = self.yoda.lines()
        self.assertTrue(sent.startswith("Sent lecture 1.bin to hans (100.0 kB in "), sent)
        [received] = self.hans.lines()
        self.assertTrue(received.startswith("Received lecture 1.bin from yoda, saved as "), received)
        self.assertEqual((self.hans.downloads / "yoda_lecture 1.bin").read_bytes(), path.read_bytes())

    def test_end_of_input_waits_for_transfers(self) -> None:
        self.send_file(50_000, command="upd")
        self.yoda.lines()
        self.yoda.console.readConnectionLost()
        self.assertEqual(self.yoda.lines(), ["Waiting for 1 file transfer to finish before logging out."])
        self.assertEqual(self.yoda.requests(), [])
        self.settle(2)
        [logout] = self.yoda.requests()
        self.assertEqual(logout["type"], "logout")

    def test_logout_during_a_transfer_cancels_it(self) -> None:
        self.send_file(500_000)
        self.clock.advance(0.01)
        self.yoda.close(Failure(ConnectionLost("gone")))
        self.settle(1)
        yoda_lines = self.yoda.lines()
        self.assertIn("Error. Sending lecture 1.bin to hans failed: lost the server.", yoda_lines)
        hans_lines = self.hans.lines()
        self.assertEqual(
            hans_lines[-1],
            "Error. Receiving lecture 1.bin from yoda failed: yoda cancelled it: lost the server. Nothing was saved.",
        )
        self.assertEqual(list(self.hans.downloads.iterdir()), [])


class OfferTests(ClientTestCase):
    """Private chats and files offered to hans: asked first, and yoda told of a refusal."""

    def setUp(self) -> None:
        super().setUp()
        self.yoda = self.harness("yoda")
        self.hans = self.harness("hans")
        self.yoda.log_in()
        self.hans.log_in()

    def offer_private(self) -> None:
        self.yoda.type("startprivate hans")
        [request] = self.yoda.requests()
        self.hans.receive({"type": "private_request", "from": "yoda", "token": "tok-1"})
        self.yoda.answer(request, type="private_address", user="hans", host="127.0.0.1", port=6001, token="tok-1")
        self.settle()
        self.assertEqual(self.yoda.lines(), ["Waiting for hans to accept the private chat."])
        self.hans.lines()

    def offer_file(self, size: int = 30_000) -> Path:
        path = self.yoda.directory / "notes.txt"
        path.write_bytes(b"n" * size)
        self.yoda.type(f"sendfile hans {path}")
        [request] = self.yoda.requests()
        self.hans.receive({"type": "file_incoming", "from": "yoda", "filename": "notes.txt", "size": size, "token": "tok-f"})
        self.yoda.answer(request, type="file_address", user="hans", host="127.0.0.1", port=6001, token="tok-f")
        self.settle(0.5)  # the START arrives, and is held while hans decides
        self.assertEqual(self.yoda.lines(), ["Sending notes.txt (30.0 kB) to hans."])
        self.assertEqual(
            self.hans.lines(),
            [f"yoda is sending you notes.txt (30.0 kB): type accept or decline"
             f" (within {self.hans.client.offers.timeout:g} s)."],
        )
        return path

    def test_declined_private_chat(self) -> None:
        self.offer_private()
        self.hans.type("decline")
        self.settle()
        self.assertEqual(self.hans.lines(), ["Declined a private chat from yoda."])
        self.assertEqual(
            self.yoda.lines(), ["Error. Could not start private messaging with hans: hans declined."]
        )
        self.assertFalse(self.yoda.client.private.is_open("hans"))
        self.assertFalse(self.hans.client.private.is_open("yoda"))

    def test_unanswered_private_chat_is_declined(self) -> None:
        self.offer_private()
        self.settle(20)
        self.assertEqual(self.hans.lines(), ["No answer within 20 s: declined a private chat from yoda."])
        self.assertEqual(
            self.yoda.lines(), ["Error. Could not start private messaging with hans: hans declined."]
        )

    def test_file_accepted_after_its_start_arrived(self) -> None:
        path = self.offer_file()
        [sending] = self.yoda.client.files.active()
        [receiving] = self.hans.client.files.active()
        self.assertIsNotNone(receiving.address)  # the START came, and was not answered
        self.assertEqual((sending.state.name, receiving.state.name), ("WAITING", "WAITING"))
        self.assertEqual(list(self.hans.downloads.iterdir()), [])
        self.hans.type("accept yoda")
        self.settle(2)
        lines = self.hans.lines()
        self.assertEqual(lines[0], "Accepted notes.txt from yoda.")
        self.assertTrue(lines[1].startswith("Received notes.txt from yoda, saved as "), lines)
        self.assertEqual((self.hans.downloads / "yoda_notes.txt").read_bytes(), path.read_bytes())

    def test_declined_file(self) -> None:
        self.offer_file()
        self.hans.type("decline")
        self.settle(1)
        self.assertEqual(self.hans.lines(), ["Declined notes.txt from yoda."])
        self.assertEqual(
            self.yoda.lines(), ["Error. Sending notes.txt to hans failed: hans declined it."]
        )
        self.assertEqual(list(self.hans.downloads.iterdir()), [])
        self.assertEqual(self.yoda.client.files.active(), [])
        self.assertEqual(self.hans.client.files.active(), [])

    def test_file_declined_before_its_start_arrives(self) -> None:
        path = self.yoda.directory / "early.txt"
        path.write_bytes(b"e" * 100)
        self.yoda.type(f"sendfile hans {path}")
        [request] = self.yoda.requests()
        self.hans.receive({"type": "file_incoming", "from": "yoda", "filename": "early.txt", "size": 100, "token": "tok-e"})
        self.hans.type("decline")
        self.yoda.answer(request, type="file_address", user="hans", host="127.0.0.1", port=6001, token="tok-e")
        self.settle(1)
        self.assertEqual(self.hans.lines()[-1], "Declined early.txt from yoda.")
        self.assertEqual(self.yoda.lines()[-1], "Error. Sending early.txt to hans failed: hans declined it.")

    def test_unanswered_file_is_declined(self) -> None:
        self.hans.client.offers.timeout = 3  # within these tests' 5 s transfer timeout
        self.offer_file()
        self.settle(4)
        self.assertEqual(self.hans.lines(), ["No answer within 3 s: declined notes.txt from yoda."])
        self.assertEqual(
            self.yoda.lines(), ["Error. Sending notes.txt to hans failed: hans did not answer in time."]
        )
        self.assertEqual(list(self.hans.downloads.iterdir()), [])

    def test_answers_without_an_offer(self) -> None:
        self.hans.type("accept", "decline luke")
        self.assertEqual(
            self.hans.lines(),
            ["Error. Nobody is waiting for your answer.", "Error. luke is not waiting for your answer."],
        )
        self.assertEqual(self.hans.requests(), [])

    def test_a_resent_file_never_replaces_the_first(self) -> None:
        for round_ in (1, 2):
            path = self.yoda.directory / "same.txt"
            path.write_bytes(f"version {round_}".encode())
            self.yoda.type(f"sendfile hans {path}")
            [request] = self.yoda.requests()
            token = f"tok-{round_}"
            self.hans.receive({"type": "file_incoming", "from": "yoda", "filename": "same.txt", "size": 9, "token": token})
            self.yoda.answer(request, type="file_address", user="hans", host="127.0.0.1", port=6001, token=token)
            self.hans.type("accept")
            self.settle(2)
        self.assertEqual((self.hans.downloads / "yoda_same.txt").read_bytes(), b"version 1")
        self.assertEqual((self.hans.downloads / "yoda_same (2).txt").read_bytes(), b"version 2")


class GuestAndRegistrationTests(ClientTestCase):
    password_login = True

    def test_guest_login(self) -> None:
        han = self.harness("han")
        han.type("guest han")
        [request] = han.requests()
        self.assertEqual(request, {"type": "guest", "user": "han", "p2p_port": 6000, "udp_port": 6000, "id": 1})
        self.assertFalse(han.echo.hidden)
        han.answer(request, type="login", success=True, user="han", guest=True)
        self.assertIs(han.client.phase, Phase.ONLINE)
        self.assertEqual(han.client.username, "han")

    def test_guests_refused(self) -> None:
        han = self.harness("han")
        han.type("guest han")
        [request] = han.requests()
        han.answer(request, type="error", code="guests_disabled", message="Error. Guests are not allowed here.")
        self.assertEqual(han.lines(), ["Error. Guests are not allowed here."])
        self.assertIs(han.client.phase, Phase.USERNAME)

    def unknown(self, harness: Harness, taken: bool = False) -> None:
        harness.type("vader", "dark")
        [login] = harness.requests()
        harness.answer(login, type="login", success=False, reason="unknown_user",
                       message="Error. Unknown user vader. Please try again.")
        [probe] = harness.requests()
        self.assertEqual(probe, {"type": "register", "user": "vader", "id": 2})
        harness.answer(probe, type="username_register_status", user="vader", taken=taken)

    def test_registration_with_the_telnet_prompts(self) -> None:
        vader = self.harness("vader")
        interactive = []
        vader.client.output.prompt = lambda text, secret=False: interactive.append((text, secret))  # type: ignore[method-assign]
        self.unknown(vader)
        vader.type("maybe", "yes", "dark1", "dark2", "dark", "dark")
        self.assertEqual(
            interactive[-6:],
            [
                ("Create a new account with that name? (yes/no) ", False),
                ("Create a new account with that name? (yes/no) ", False),
                ("New password: ", True),
                ("Repeat the password: ", True),
                ("New password: ", True),
                ("Repeat the password: ", True),
            ],
        )
        self.assertEqual(vader.echo.history[-2:], ["hide", "restore"])
        [register] = vader.requests()
        self.assertEqual(register, {"type": "register", "user": "vader", "password": "dark", "id": 3})
        vader.answer(register, type="register_status", status=True, user="vader")
        self.assertEqual(
            vader.lines(),
            ["There is no account vader.", "Error. The passwords differ; try again.",
             "Account vader created."],
        )
        self.assertPasswordLogin(vader, "dark", 4)

    def test_no_new_account(self) -> None:
        vader = self.harness("vader")
        self.unknown(vader)
        vader.type("no")
        self.assertIs(vader.client.phase, Phase.USERNAME)
        self.assertEqual(vader.requests(), [])

    def test_registration_refused(self) -> None:
        vader = self.harness("vader")
        self.unknown(vader)
        vader.type("y", "dark", "dark")
        [register] = vader.requests()
        vader.answer(register, type="register_status", status=False, user="vader", code="weak",
                     additional_info="Error. Too short.")
        self.assertEqual(vader.lines()[-1], "Error. Too short.")
        self.assertIs(vader.client.phase, Phase.USERNAME)

    def test_server_without_registration_asks_the_name_again(self) -> None:
        vader = self.harness("vader")
        vader.type("vader", "dark")
        [login] = vader.requests()
        vader.answer(login, type="login", success=False, reason="unknown_user", message="Unknown.")
        [probe] = vader.requests()
        vader.answer(probe, type="register_status", status=False, user="vader", code="registration_disabled",
                     additional_info="Error. This server does not take new accounts.")
        self.assertIs(vader.client.phase, Phase.USERNAME)
        self.assertEqual(vader.lines(), ["Unknown."])


class HabitsAndCompletionTests(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.yoda = self.harness("yoda")
        self.yoda.type("yoda", "pw")
        login, server_final = self.yoda.prove(*self.yoda.challenge("pw"))
        self.yoda.answer(login, type="login", success=True, user="yoda", server_final=server_final)
        self.yoda.answer_who("hans", "hanna")

    def test_irc_habits(self) -> None:
        self.yoda.type("/msg hans hi there")
        [request] = self.yoda.requests()
        self.assertEqual(request, {"type": "message", "to": "hans", "message": "hi there", "id": 4})
        self.yoda.answer(request, type="ok", command="message")
        for word in ("quit", "exit", "/quit", "/EXIT"):
            self.yoda.type(word)
            [request] = self.yoda.requests()
            self.assertEqual(request["type"], "logout")
            self.yoda.answer(request, type="ok", command="logout")

    def test_completion_of_commands_and_online_users(self) -> None:
        complete = self.yoda.client.complete
        self.assertEqual(complete("mes", True), ["message"])
        self.assertEqual(complete("/ms", True), ["/msg"])
        self.assertIn("accept", complete("ac", True))
        self.assertEqual(sorted(complete("ha", False)), ["hanna", "hans"])
        self.yoda.receive({"type": "user_notification", "user": "hanna", "status": False})
        self.yoda.receive({"type": "user_notification", "user": "harry", "status": True})
        self.assertEqual(sorted(complete("ha", False)), ["hans", "harry"])

    def test_no_completion_before_login(self) -> None:
        luke = self.harness("luke")
        self.assertEqual(luke.client.complete("me", True), [])

    def test_messages_are_time_stamped(self) -> None:
        self.yoda.lines()
        self.yoda.receive({"type": "broadcast", "from": "hans", "message": "all", "timestamp": 1, "seq": 1})
        self.yoda.receive({"type": "room_message", "room": 2, "from": "hans", "message": "r", "timestamp": 1, "seq": 1})
        self.yoda.receive({"type": "message", "from": "hans", "message": "old", "timestamp": 1_795_000_000, "offline": True})
        lines = self.yoda.lines()
        self.assertEqual(lines[:2], [f"{stamp(self.clock)} [broadcast] hans: all", f"{stamp(self.clock)} [room 2] hans: r"])
        self.assertTrue(lines[2].startswith("[offline "), lines)
