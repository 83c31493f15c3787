"""End to end: SCRAM-SHA-256 logins against a real ``twistd chat`` server on loopback.

A raw JSON client (a plain socket speaking JSON lines, with ``scramp`` as its
SCRAM implementation) logs in and checks the server's signature, then chats
with a ``chat-client`` that logged in with SCRAM (its default); an
account hashed before SCRAM existed falls back to the password once and uses
SCRAM from then on; and a ``chat-client`` talking to an impostor (a server
that does not know the password's keys) closes the connection with status 1.

Every wait has a deadline; everything listens on and talks to 127.0.0.1.
"""

from __future__ import annotations

import base64
import hmac
import json
import socket
import threading
import time
from typing import Any

import scramp

import chatservice
from chatservice.auth.passwords import hash_password
from chatservice.auth.scram import ScramKeys, ScramServerExchange
from chatservice.client import login
from tests.e2e_support import GREETING, HOST, USERNAME_PROMPT, ChatServer, LineClient
from tests.test_client_end_to_end import WAIT, ClientProcess, EndToEndTestCase


def scramp_login(connection: LineClient, username: str, password: str) -> tuple[dict[str, Any], scramp.ScramClient]:
    """Log a fresh connection in over JSON with ``scramp``: the ``login`` reply, and the client.

    The server's signature is not checked yet: ``client.set_server_final``.
    """
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
    connection.greeted()
    connection.send_json(
        {"type": "salt", "mechanism": "SCRAM-SHA-256", "message": client.get_client_first(), "id": 1}
    )
    assert connection.read_line() == ""  # the server ends the prompt's line for JSON
    challenge = connection.read_json()
    assert (challenge["type"], challenge["id"]) == ("salt", 1), challenge
    client.set_server_first(challenge["message"])
    connection.send_json(
        {"type": "login", "mechanism": "SCRAM-SHA-256", "message": client.get_client_final(), "id": 2}
    )
    return connection.read_json(), client


def transcript(client: ClientProcess, direction: str | None = None) -> list[dict[str, Any]]:
    """The messages of ``client``'s ``--json-log`` in order (only those ``sent`` or ``received``)."""
    entries = [json.loads(line) for line in client.sent_to_or_from_server().splitlines()]
    return [e["message"] for e in entries if direction in (None, e["direction"])]


class ScramEndToEndTests(EndToEndTestCase):
    def test_raw_json_client_with_scramp_checks_the_server_and_chats(self) -> None:
        hans = self.client("hans")
        hans.log_in("falcon")
        with LineClient(self.server.port, timeout=WAIT) as yoda:
            reply, scram = scramp_login(yoda, "yoda", "wise")
            self.assertEqual(
                {k: v for k, v in reply.items() if k != "server_final"},
                {"type": "login", "success": True, "user": "yoda", "guest": False, "id": 2},
            )
            scram.set_server_final(reply["server_final"])  # raises if the signature is wrong
            forged = "v=" + base64.b64encode(bytes(32)).decode("ascii")
            self.assertRaises(scramp.ScramException, scram.set_server_final, forged)
            hans.expect("yoda logged in")
            yoda.send_json({"type": "message", "to": "hans", "message": "from scramp", "id": 3})
            hans.expect("yoda: from scramp")
            hans.send("message yoda back at you")
            _before, message = yoda.read_json_until(lambda obj: obj.get("type") == "message")
            self.assertEqual((message["from"], message["message"]), ("hans", "back at you"))
        self.assertEqual(hans.finish(), 0)
        # chat-client logged in with SCRAM too: the password never left it.
        hello, salt, final, *_rest = transcript(hans, "sent")
        self.assertEqual((salt["type"], salt["mechanism"]), ("salt", "SCRAM-SHA-256"))
        self.assertEqual((final["type"], final["mechanism"]), ("login", "SCRAM-SHA-256"))
        self.assertGreater(final["p2p_port"], 0)
        self.assertGreater(final["udp_port"], 0)
        [answer] = [m for m in transcript(hans, "received") if m.get("id") == final["id"]]
        self.assertTrue(answer["success"])
        self.assertTrue(answer["server_final"].startswith("v="))
        self.assertNotIn("falcon", hans.sent_to_or_from_server())
        self.assertFalse(any("password" in message for message in transcript(hans)))

    def test_raw_json_client_with_a_wrong_password(self) -> None:
        with LineClient(self.server.port, timeout=WAIT) as luke:
            reply, _scram = scramp_login(luke, "luke", "sith")
            self.assertEqual((reply["success"], reply["reason"]), (False, "wrong_password"))
            self.assertNotIn("server_final", reply)

    def test_account_hashed_before_scram_falls_back_once(self) -> None:
        for run in ("first", "second"):
            (self.directory / run).mkdir()
        with ChatServer({"vader": hash_password("sith")}, timeout=120) as server:
            first = ClientProcess("vader", server.port, self.directory / "first")
            self.clients.append(first)
            first.send("vader")
            first.send("sith")
            first.expect(login.FALLBACK_LINES[login.NO_KEYS])
            first.expect("Welcome to chatservice, vader!")
            self.assertEqual(first.finish(), 0)
            self.assertEqual(
                [(m["type"], m.get("password")) for m in transcript(first, "sent")],
                # whoelse: the client asks quietly who is online (for Tab completion).
                [("hello", None), ("salt", None), ("login", "***"), ("whoelse", None), ("logout", None)],
            )
            # That password login gives the account its SCRAM keys, written
            # in the background (a scrypt check and a file write).
            credentials = server.directory / "credentials.txt"
            deadline = time.monotonic() + WAIT
            while "SCRAM-SHA-256$" not in credentials.read_text(encoding="utf-8"):
                self.assertLess(time.monotonic(), deadline, "the keys were never written")
                time.sleep(0.05)
            second = ClientProcess("vader", server.port, self.directory / "second")
            self.clients.append(second)
            second.log_in("sith")
            self.assertEqual(second.finish(), 0)
            self.assertNotIn(login.FALLBACK_LINES[login.NO_KEYS], second.output)
            self.assertIn("SCRAM-SHA-256", second.sent_to_or_from_server())
            self.assertNotIn("sith", second.sent_to_or_from_server())

    def test_password_login_option(self) -> None:
        yoda = self.client("yoda", "--password-login")
        yoda.log_in("wise")
        self.assertEqual(yoda.finish(), 0)
        hello, request, who, logout = transcript(yoda, "sent")
        self.assertEqual((request["type"], request["password"]), ("login", "***"))

    def test_impostor_server_is_refused(self) -> None:
        impostor = ImpostorServer()
        impostor.start()
        self.addCleanup(impostor.join, WAIT)
        yoda = ClientProcess("yoda", impostor.port, self.directory)
        self.clients.append(yoda)
        yoda.send("yoda")
        yoda.send("wise")
        yoda.send("message hans never sent")
        yoda.expect(login.IMPOSTOR)
        self.assertEqual(yoda.wait(), 1)
        self.assertNotIn("Welcome", yoda.output)
        self.assertEqual([r["type"] for r in impostor.received], ["hello", "salt", "login"])
        self.assertNotIn("wise", json.dumps(impostor.received))
        impostor.join(WAIT)
        self.assertTrue(impostor.closed_by_client)


class ImpostorServer(threading.Thread):
    """Speaks the server's JSON login to one client, but does not know any password's keys.

    It challenges with the keys of a guessed password, accepts any proof, and
    signs with the keys of its guess.  :attr:`received` has every request.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(WAIT)
        self.port: int = self.listener.getsockname()[1]
        self.received: list[dict[str, Any]] = []
        self.closed_by_client = False
        self.keys = ScramKeys.derive("a guess")
        self.exchange: ScramServerExchange | None = None
        self.server_first = ""

    def run(self) -> None:
        with self.listener:
            connection, _address = self.listener.accept()
        with connection:
            connection.settimeout(WAIT)
            connection.sendall(f"{GREETING}\r\n{USERNAME_PROMPT}".encode("utf-8"))
            buffer = b""
            while True:
                data = connection.recv(65536)
                if not data:
                    self.closed_by_client = True
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    self.received.append(request)
                    connection.sendall(json.dumps(self.answer(request)).encode("utf-8") + b"\n")

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["type"] == "hello":
            reply: dict[str, Any] = {"type": "hello", "version": chatservice.__version__}
        elif request["type"] == "salt":
            self.exchange = ScramServerExchange(request["message"])
            self.server_first = self.exchange.server_first(self.keys)
            reply = {"type": "salt", "message": self.server_first}
        elif request["type"] == "login" and self.exchange is not None:
            final = self.exchange.parse_client_final(request["message"])
            auth_message = f"{self.exchange.client_first.bare},{self.server_first},{final.without_proof}"
            signature = hmac.digest(self.keys.server_key, auth_message.encode("utf-8"), "sha256")
            reply = {
                "type": "login", "success": True, "user": "yoda",
                "server_final": "v=" + base64.b64encode(signature).decode("ascii"),
            }
        else:
            reply = {"type": "error", "code": "invalid_command", "message": "?"}
        return dict(reply, id=request["id"])
