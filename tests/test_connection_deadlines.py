"""End to end: connections that never finish opening or closing do not hold a slot.

A real ``twistd chat`` with an ``ssl:`` and a ``tcp:`` listener on loopback
(certificates made for the test, as in ``tests/test_tls.py``):

- TLS sockets that send nothing, or half a ClientHello, are closed by the
  login deadline (or the shorter ``--tls-handshake-deadline``), so they stop
  counting towards ``--max-connections`` and a real user gets in;
- a TLS socket refused before its handshake (too many from its address) is
  dropped at once instead of holding a slot until a handshake that never
  comes;
- a connection the server closes is aborted ``--close-deadline`` seconds
  later if the client never takes its last bytes (TCP) or never answers the
  TLS close (``close_notify``).

Linux only where a second loopback address (``127.0.0.2``) is needed.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import ssl
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.certs import client_hello, make_certificates
from tests.e2e_support import launch_twistd, loopback_source, stop_process

SLACK = 2.5
"""Seconds a deadline may be late (process start, a loaded test machine)."""


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the server ends ``sock`` (EOF or reset) within ``timeout`` seconds; what it sends is read."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False


def reset_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the server resets ``sock`` within ``timeout`` seconds, without reading from it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET:
            return True
        time.sleep(0.05)
    return False


class DeadlineServer(unittest.TestCase):
    """A twistd with a TLS and a TCP listener and the options of :attr:`options`."""

    options: tuple[str, ...] = ()

    def setUp(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="chat-deadlines-"))
        self.addCleanup(shutil.rmtree, work, True)
        self.certs = make_certificates(work)
        (work / "credentials.txt").write_text("yoda wise\nhans falcon\n")
        self.process, ports = launch_twistd(
            [
                "-n", "--pidfile=", "chat",
                "--listen",
                f"ssl:0:interface=127.0.0.1:privateKey={self.certs['key']}:certKey={self.certs['cert']}",
                "--listen", "tcp:0:interface=127.0.0.1",
                "--credentials", str(work / "credentials.txt"),
                "--data-dir", str(work / "data"),
                *self.options,
            ],
            work,
            ports=2,
        )
        self.work = work
        log = b"".join(path.read_bytes() for path in work.glob("twistd-*.log"))
        # The TLS listener is the first one given, and logs "(TLS)".
        self.tls_port, self.tcp_port = ports if b"(TLS) starting on %d" % ports[0] in log else ports[::-1]
        self.addCleanup(stop_process, self.process)

    def log(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.work.glob("twistd-*.log"))

    def raw(self, source: str = "127.0.0.1", port: int | None = None) -> socket.socket:
        """A TCP connection to the TLS port (or ``port``) from ``source``."""
        sock = socket.create_connection(
            ("127.0.0.1", port or self.tls_port), timeout=10, source_address=(source, 0)
        )
        self.addCleanup(sock.close)
        return sock

    def idle_tls(
        self, count: int, source: str = "127.0.0.1", refused: bool = False
    ) -> list[socket.socket | None]:
        """``count`` sockets on the TLS port: every other one sends half a ClientHello.

        :param refused: the server is expected to drop them at once; one it
            reset before ``connect`` returned (under load the reset can beat
            the connect's own wake-up) is given as ``None``.
        """
        hello = client_hello()
        sockets: list[socket.socket | None] = []
        for index in range(count):
            try:
                sock = self.raw(source)
            except ConnectionResetError:
                if not refused:
                    raise
                sockets.append(None)
                continue
            if index % 2:
                try:
                    sock.sendall(hello[: len(hello) // 2])
                except (ConnectionResetError, BrokenPipeError):
                    if not refused:
                        raise
            sockets.append(sock)
        return sockets

    def tls_login(self, source: str = "127.0.0.1") -> str:
        """Log ``yoda`` in over TLS from ``source``: the reply's ``type`` (or how it failed)."""
        context = ssl.create_default_context(cafile=str(self.certs["ca"]))
        sock = self.raw(source)
        try:
            secure = context.wrap_socket(sock, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError) as e:
            return f"handshake failed: {e.__class__.__name__}"
        self.addCleanup(secure.close)
        secure.sendall(b'{"type":"login","user":"yoda","password":"wise"}\n')
        secure.settimeout(10)
        data = b""
        while b"\n" not in data:
            chunk = secure.recv(65536)
            if not chunk:
                return f"closed: {data!r}"
            data += chunk
        reply = json.loads(data.split(b"\n")[0])
        return "logged in" if reply.get("success") else reply.get("reason", reply["type"])


class LoginDeadlineCoversHandshakeTests(DeadlineServer):
    """Idle TLS sockets end with the login deadline; meanwhile they count towards the cap."""

    options = ("--max-connections", "3", "--max-per-address", "3", "--login-deadline", "2")

    def test_idle_tls_sockets_closed_then_a_user_gets_in(self) -> None:
        started = time.monotonic()
        idle = self.idle_tls(3)
        self.assertNotEqual(self.tls_login(), "logged in", "the idle sockets fill the server")
        for sock in idle:
            self.assertTrue(closed_within(sock, 2 + SLACK), "an idle TLS socket outlived the login deadline")
        self.assertLess(time.monotonic() - started, 2 + SLACK)
        self.assertEqual(self.tls_login(), "logged in")
        self.assertNotIn("Traceback", self.log())


class RefusedBeforeHandshakeTests(DeadlineServer):
    """Per-address caps apply to TLS, and a refused TLS socket is dropped at once."""

    options = ("--max-connections", "4", "--max-per-address", "2", "--login-deadline", "30")

    def setUp(self) -> None:
        if not loopback_source("127.0.0.2"):
            raise unittest.SkipTest("needs 127.0.0.2 on loopback")
        super().setUp()

    def test_refused_sockets_hold_no_slot(self) -> None:
        admitted = self.idle_tls(2)
        refused = self.idle_tls(6, refused=True)
        for sock in refused:
            if sock is not None:  # (None: reset before its connect returned)
                self.assertTrue(closed_within(sock, SLACK), "a refused TLS socket was kept open")
        # Two idle sockets from 127.0.0.1 still count; another address gets in.
        self.assertEqual(self.tls_login("127.0.0.2"), "logged in")
        for sock in admitted:
            self.assertFalse(closed_within(sock, 0.2), "admitted sockets stay until a deadline")


class HandshakeAndCloseDeadlineTests(DeadlineServer):
    """A shorter handshake deadline; closes that are never acknowledged are aborted."""

    options = (
        "--tls-handshake-deadline", "1", "--login-deadline", "30", "--close-deadline", "1",
        "--max-message-length", "60000", "--max-line-length", "70000",
    )

    def test_handshake_deadline(self) -> None:
        started = time.monotonic()
        for sock in self.idle_tls(2):
            self.assertTrue(closed_within(sock, 1 + SLACK))
        self.assertGreater(time.monotonic() - started, 0.9)
        self.assertEqual(self.tls_login(), "logged in", "a real client has time enough")

    def test_tls_close_never_answered_is_aborted(self) -> None:
        """The client logs out but never sends its ``close_notify``: the server aborts."""
        context = ssl.create_default_context(cafile=str(self.certs["ca"]))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        sock = self.raw()
        sock.settimeout(10)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        sock.sendall(outgoing.read())
        tls.write(b'{"type":"login","user":"yoda","password":"wise"}\n{"type":"logout"}\n')
        sock.sendall(outgoing.read())
        # The goodbye and the server's close_notify arrive; the raw socket stays
        # ours: no close_notify goes back.
        received = b""
        while b"Goodbye" not in received:
            data = sock.recv(65536)
            self.assertTrue(data, "closed before the goodbye")
            incoming.write(data)
            try:
                received += tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
        self.assertTrue(closed_within(sock, 1 + SLACK), "the server waits for close_notify forever")

    def test_tcp_close_never_taken_is_aborted(self) -> None:
        """A client stops reading with output queued, then logs out: aborted, not kept."""
        reader = self.raw(port=self.tcp_port)
        self.assertIn(b'"success":true', self.json_login(reader, "yoda", "wise"))
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(10)
        slow.connect(("127.0.0.1", self.tcp_port))
        self.addCleanup(slow.close)
        self.assertIn(b'"success":true', self.json_login(slow, "hans", "falcon"))
        # 400 KB of broadcasts for hans, who reads none of them: more than the
        # kernel's buffers hold, less than the hard limit.
        text = "x" * 50_000
        for index in range(8):
            reader.sendall(json.dumps({"type": "broadcast", "message": text, "id": index}).encode() + b"\n")
        received = b""
        while received.count(b'"type":"broadcast_status"') < 8:
            received += reader.recv(65536)
        slow.sendall(b'{"type":"logout"}\n')
        self.assertTrue(reset_within(slow, 1 + 2 * SLACK), "the close waits for a reader forever")

    @staticmethod
    def json_login(sock: socket.socket, user: str, password: str) -> bytes:
        """Log ``user`` in over JSON on ``sock``: the first reply line."""
        sock.sendall(json.dumps({"type": "login", "user": user, "password": password}).encode() + b"\n")
        reply = b""
        while b"\n" not in reply:
            reply += sock.recv(4096)
        return reply.split(b"\n")[0]
