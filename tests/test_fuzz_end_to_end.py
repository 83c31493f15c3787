"""A bounded fuzz test: raw bytes and structured JSON against a real ``twistd chat``, TCP and TLS.

One server listens on loopback on a plain TCP port and a TLS port (a
throw-away certificate from :mod:`tests.certs`), with guests and registration
allowed so that the fuzz reaches the commands of a logged-in user too.  Two
users, ``ann`` over TCP and ``bob`` over TLS, log in first and stay.  Then
:data:`CASES` cases, generated from :data:`SEED` (so a failure names a case
that can be replayed), each on a new connection from another loopback
address (the fuzz's failed logins lock those addresses, not the users'):

- raw bytes: random bytes, invalid UTF-8, NULs, telnet negotiation, over-long
  lines, lone carriage returns, a ``{`` followed by garbage;
- structured JSON: objects of every request type with random fields and
  values of every JSON type (huge numbers, NaN, lone surrogates, nesting),
  arrays and scalars instead of objects, truncated lines;
- a guest login (text or JSON), then random commands with random arguments
  (Unicode digits, 5000-digit numbers, bidi and control characters);
- over TLS (the same cases inside a real TLS session), and raw bytes to the
  TLS port (a broken or half ClientHello).

After every case the server must still run; every :data:`CHECK_EVERY` cases
and at the end ``ann`` and ``bob`` must still exchange a message both ways,
and a new pair of users must log in and do the same; the server's log must
hold no traceback.  Every socket operation has a deadline and the cases are
counted, so the test is bounded in time (about 30 s here).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import ssl
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from twisted.trial import unittest

from chatservice.commands import COMMANDS
from tests.certs import make_certificates
from tests.e2e_support import launch_twistd, loopback_source, stop_process

SEED = 15_0006
CASES = 240
CHECK_EVERY = 40
"""Cases between two checks that ``ann`` and ``bob`` still talk."""
SOURCES = [f"127.0.0.{n}" for n in range(40, 60)]
"""The fuzz's client addresses (never 127.0.0.1, the users' address)."""
TIME_BOUND = 240.0
"""The whole fuzz must end within this (it takes far less; a hang fails)."""
ACCOUNTS = {"ann": "pw-ann", "bob": "pw-bob", "cat": "pw-cat", "dan": "pw-dan"}

JSON_TYPES = sorted(
    {command.name.replace(" ", "_") for command in COMMANDS}
    | {alias for command in COMMANDS for alias in command.aliases}
    | {"login", "guest", "register", "salt", "hello", "logout", "disconnect", "help"}
)
FIELDS = sorted(
    {argument.name for command in COMMANDS for argument in command.arguments}
    | {"user", "password", "mechanism", "message", "version", "id", "p2p_port", "udp_port"}
)
WORDS = [
    "ann", "bob", "cat", "nobody", "guest", "0", "1", "-1", "²", "٣", "1e9", "9" * 5000,
    "\u202eevil", "a\u2028b", "\x1b[2J", "\x00", "..", "../../x", "#x", "ｙｏｄａ", "é",
    "SCRAM-SHA-256", "n,,n=ann,r=abc", "yes", "no", "true", "on", "off", "away", "",
]


class FuzzGenerator:
    """What one case sends, from a seeded :class:`random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self, limit: int = 40) -> str:
        rng = self.rng
        pools = [
            lambda: chr(rng.randint(0x20, 0x7E)),
            lambda: chr(rng.randint(0, 0x1F)),
            lambda: chr(rng.randint(0x80, 0x2FFF)),
            lambda: chr(rng.choice([0x202E, 0x2066, 0x2028, 0xFEFF, 0x0301, 0xD800, 0x10FFFF])),
            lambda: rng.choice(WORDS),
        ]
        return "".join(rng.choice(pools)() for _ in range(rng.randint(0, limit)))

    def json_value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randint(0, 9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice([0, -1, 1, 2**63, -(2**63) - 1, 10**40, rng.randint(-1000, 10**6)])
        if kind == 3:
            return rng.choice([0.5, -0.0, 1e308, float("nan"), float("inf"), rng.random()])
        if kind in (4, 5, 6):
            return self.text()
        if kind in (7, 8):
            return [self.json_value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {self.text(8): self.json_value(depth + 1) for _ in range(rng.randint(0, 4))}

    def json_line(self) -> bytes:
        """One structured request (or something that is not quite one)."""
        rng = self.rng
        obj: dict[str, Any] = {"type": rng.choice(JSON_TYPES) if rng.random() < 0.9 else self.json_value()}
        for name in rng.sample(FIELDS, rng.randint(0, 4)):
            obj[name] = rng.choice(WORDS) if rng.random() < 0.4 else self.json_value()
        shape = rng.random()
        value: Any = obj
        if shape < 0.05:
            value = [obj]
        elif shape < 0.08:
            value = self.json_value()
        line = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        if rng.random() < 0.05:
            line = line[: rng.randint(0, len(line))]
        return line + rng.choice([b"\n", b"\r\n", b"\n\n"])

    def command_line(self) -> bytes:
        """One text command with random arguments."""
        rng = self.rng
        command = rng.choice(COMMANDS)
        words = [rng.choice((command.name, *command.aliases))]
        for _ in range(rng.randint(0, 4)):
            words.append(rng.choice(WORDS) if rng.random() < 0.5 else self.text(12))
        return " ".join(words).encode("utf-8", "surrogatepass") + rng.choice([b"\r\n", b"\n"])

    def raw(self) -> bytes:
        rng = self.rng
        choice = rng.randint(0, 8)
        if choice == 0:
            return rng.randbytes(rng.randint(1, 2048))
        if choice == 1:
            return b"\n".join(rng.randbytes(rng.randint(0, 80)) for _ in range(rng.randint(1, 20)))
        if choice == 2:
            return b"x" * rng.randint(8000, 20000) + rng.choice([b"", b"\r\n"])
        if choice == 3:
            return rng.choice([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]) * 8 + b"\r\n"
        if choice == 4:
            return b"\xff\xfd\x01\xff\xfb\x03\xff\xf4\xff\xfd\x06" + b"ann\r\n"
        if choice == 5:
            return b"{" + rng.randbytes(rng.randint(0, 300)) + b"\n"
        if choice == 6:
            return rng.choice([b"\x00", b"\r", b"\n", b"\r\n", b" "]) * rng.randint(1, 3000)
        if choice == 7:
            return self.text(200).encode("utf-8", "surrogatepass") + b"\r\n"
        return b"\r\n".join(
            rng.choice([b"ann", b"bob", b"guest x", b"nobody", b"pw-ann", b"yes"])
            for _ in range(rng.randint(1, 6))
        ) + b"\r\n"

    def client_hello(self) -> bytes:
        """A broken or partial TLS ClientHello, or junk, for the TLS port."""
        rng = self.rng
        record = b"\x16\x03\x01" + struct.pack("!H", rng.randint(0, 0xFFFF)) + b"\x01"
        return rng.choice(
            [record, record + rng.randbytes(rng.randint(0, 600)), rng.randbytes(rng.randint(1, 600)),
             b"ann\r\npw-ann\r\n", b"\x80" * 40]
        )

    def case(self, number: int) -> tuple[str, list[bytes]]:
        """``(kind, chunks)``: what the case is, and the pieces it sends."""
        rng = self.rng
        kind = rng.choice(["raw", "raw", "json", "json", "guest-text", "guest-json", "text-login"])
        if kind == "raw":
            chunks = [self.raw() for _ in range(rng.randint(1, 3))]
        elif kind == "json":
            chunks = [self.json_line() for _ in range(rng.randint(1, 6))]
        elif kind == "guest-text":
            chunks = [f"guest g{number}\r\n".encode()] + [
                self.command_line() for _ in range(rng.randint(1, 8))
            ]
        elif kind == "guest-json":
            login = json.dumps({"type": "guest", "user": f"g{number}", "id": 0}).encode() + b"\n"
            chunks = [login] + [self.json_line() for _ in range(rng.randint(1, 8))]
        else:
            chunks = [
                self.text(20).encode("utf-8", "surrogatepass") + b"\r\n" for _ in range(rng.randint(1, 6))
            ]
        return kind, chunks


class Peer:
    """A logged-in JSON user on a (TLS or plain) socket, with deadlines on every read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, obj: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def read_until(self, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """Read JSON lines until ``check(obj)`` (others are skipped: fuzz guests may talk to us)."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if line.strip().startswith(b"{"):
                    obj = json.loads(line)
                    if check(obj):
                        return obj
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing matching within {timeout} s; have {self.buffer[-500:]!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("connection closed")
            self.buffer += data

    def drain(self) -> None:
        """Read whatever has arrived (so that a flood of fuzz messages never backs up on us)."""
        self.sock.settimeout(0.001)
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise AssertionError("connection closed")
                self.buffer = (self.buffer + data)[-(1 << 16):]
        except (socket.timeout, ssl.SSLWantReadError, BlockingIOError):
            pass
        # Keep only whole lines' worth of the tail: what matters is read later.
        if b"\n" in self.buffer:
            self.buffer = self.buffer[self.buffer.rindex(b"\n") + 1 :]

    def login(self, user: str) -> None:
        self.read_until_prompt()
        self.send({"type": "login", "user": user, "password": ACCOUNTS[user], "id": "login"})
        reply = self.read_until(lambda obj: obj.get("id") == "login")
        assert reply.get("success") is True, reply

    def read_until_prompt(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while b"Username: " not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("closed before the prompt")
            self.buffer += data
        self.buffer = b""


class FuzzEndToEndTests(unittest.TestCase):
    """A fixed number of seeded fuzz cases; the server survives and its users do not notice."""

    def setUp(self) -> None:
        if not all(loopback_source(source) for source in SOURCES):
            raise unittest.SkipTest("cannot connect from 127.0.0.40-59 on this host")
        work = Path(tempfile.mkdtemp(prefix="chat-fuzz-"))
        self.addCleanup(shutil.rmtree, work, True)
        self.work = work
        self.certs = make_certificates(work)
        (work / "credentials.txt").write_text(
            "".join(f"{user} {password}\n" for user, password in ACCOUNTS.items())
        )
        self.process, (self.tcp_port, self.tls_port) = launch_twistd(
            [
                "-n", "--pidfile=", "chat",
                "--listen", "tcp:0:interface=127.0.0.1",
                "--listen",
                f"ssl:0:interface=127.0.0.1:privateKey={self.certs['key']}:certKey={self.certs['cert']}",
                "--credentials", str(work / "credentials.txt"),
                "--data-dir", str(work / "data"),
                "--allow-guests", "--allow-register",
                "--block-duration", "2", "--timeout", "120",
            ],
            work,
            ports=2,
        )
        self.addCleanup(stop_process, self.process)
        self.context = ssl.create_default_context(cafile=str(self.certs["ca"]))
        self.sockets: list[socket.socket] = []
        self.addCleanup(self._close_sockets)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def log(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.work.glob("twistd-*.log")))

    def connect(self, tls: bool, source: str = "127.0.0.1", port: int | None = None) -> socket.socket:
        raw = socket.create_connection(
            ("127.0.0.1", port or (self.tls_port if tls else self.tcp_port)),
            timeout=5,
            source_address=(source, 0),
        )
        if not tls:
            return raw
        try:
            return self.context.wrap_socket(raw, server_hostname="localhost")
        except Exception:
            raw.close()
            raise

    def peer(self, user: str, tls: bool) -> Peer:
        sock = self.connect(tls)
        self.sockets.append(sock)
        peer = Peer(sock)
        peer.login(user)
        return peer

    def exchange(self, one: Peer, other: Peer, one_name: str, other_name: str, text: str) -> None:
        """``one`` and ``other`` send each other a message, and each gets it."""
        one.send({"type": "message", "to": other_name, "message": text})
        other.read_until(lambda obj: obj.get("type") == "message" and obj.get("message") == text)
        other.send({"type": "message", "to": one_name, "message": text + " back"})
        one.read_until(lambda obj: obj.get("type") == "message" and obj.get("message") == text + " back")

    def run_case(self, tls: str, source: str, chunks: list[bytes], rng: random.Random) -> None:
        """Send ``chunks`` on a new connection, read what comes for a moment, close (or reset)."""
        try:
            sock = self.connect(tls == "inside", source, self.tls_port if tls != "none" else None)
        except (OSError, ssl.SSLError):
            return  # refused (e.g. too many connections from that address): not a failure
        try:
            sock.settimeout(5)
            for chunk in chunks:
                sock.sendall(chunk)
            sock.settimeout(0.03)
            received = 0
            while received < 1 << 20:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
        except (OSError, ssl.SSLError):
            pass  # timed out reading, or the server closed the connection: both fine
        finally:
            if rng.random() < 0.3:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            sock.close()

    def test_fuzz_leaves_the_server_and_its_users_unharmed(self) -> None:
        rng = random.Random(SEED)
        fuzz = FuzzGenerator(rng)
        ann = self.peer("ann", tls=False)
        bob = self.peer("bob", tls=True)
        started = time.monotonic()
        kinds: dict[str, int] = {}
        for number in range(CASES):
            kind, chunks = fuzz.case(number)
            tls = rng.choices(["none", "inside", "raw"], [0.6, 0.3, 0.1])[0]
            if tls == "raw":
                kind, chunks = "tls-garbage", [fuzz.client_hello()] + chunks[:1]
            kinds[f"{kind}/{tls}"] = kinds.get(f"{kind}/{tls}", 0) + 1
            self.run_case(tls, rng.choice(SOURCES), chunks, rng)
            ann.drain()
            bob.drain()
            self.assertIsNone(
                self.process.poll(), f"the server died at case {number} ({kind}, seed {SEED}):\n{self.log()}"
            )
            if number % 10 == 9 or number == CASES - 1:
                log = self.log()
                self.assertNotIn(
                    "Traceback", log, f"a traceback by case {number} or the 9 before it (seed {SEED}):\n{log}"
                )
            if (number + 1) % CHECK_EVERY == 0:
                self.exchange(ann, bob, "ann", "bob", f"still here after case {number}")
            self.assertLess(time.monotonic() - started, TIME_BOUND, f"the fuzz took too long: {kinds}")
        # Every kind of case ran, over both transports.
        self.assertTrue({"raw", "json", "guest-text", "guest-json", "text-login"} <= {k.split("/")[0] for k in kinds})
        self.assertIn("tls-garbage/raw", kinds)
        # The users who were there all along, and new ones, still talk.
        self.exchange(ann, bob, "ann", "bob", "after the fuzz")
        cat = self.peer("cat", tls=True)
        dan = self.peer("dan", tls=False)
        self.exchange(cat, dan, "cat", "dan", "new here")
        self.assertIsNone(self.process.poll())
        log = self.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)
