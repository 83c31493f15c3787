"""End to end over TLS: a real twistd with ``ssl:`` and ``tcp:`` listeners side by side."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.certs import make_certificates
from tests.e2e_support import launch_twistd, stop_process, subprocess_environment

def read_until(sock: socket.socket, marker: bytes, timeout: float = 10.0) -> bytes:
    """Read from ``sock`` until ``marker`` has arrived (bounded)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} not received; got {data!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}; got {data!r}")
        data += chunk
    return data


class TLSEndToEndTests(unittest.TestCase):
    """--listen ssl:... works beside plain TCP, with a certificate made for the test."""

    def setUp(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="chat-tls-"))
        self.addCleanup(shutil.rmtree, work, True)
        self.certs = make_certificates(work)
        (work / "credentials.txt").write_text("yoda wise\nhans falcon\n")
        self.process, (self.tcp_port, self.tls_port) = launch_twistd(
            [
                "-n", "--pidfile=", "chat",
                "--listen", "tcp:0:interface=127.0.0.1",
                "--listen",
                f"ssl:0:interface=127.0.0.1:privateKey={self.certs['key']}:certKey={self.certs['cert']}",
                "--credentials", str(work / "credentials.txt"),
                "--data-dir", str(work / "data"),
                "--operator", "hans",
            ],
            work,
            ports=2,
        )
        self.addCleanup(stop_process, self.process)

    def tls_connect(self, cafile: Path, hostname: str = "localhost") -> ssl.SSLSocket:
        context = ssl.create_default_context(cafile=str(cafile))
        raw = socket.create_connection(("127.0.0.1", self.tls_port), timeout=10)
        try:
            return context.wrap_socket(raw, server_hostname=hostname)
        except Exception:
            raw.close()
            raise

    def yoda_over_tls_and_hans_over_tcp(self) -> tuple[ssl.SSLSocket, socket.socket]:
        """yoda logged in over TLS (text), then hans over plain TCP (JSON)."""
        secure = self.tls_connect(self.certs["ca"])
        self.addCleanup(secure.close)
        self.assertEqual(secure.getpeercert()["subject"], ((("commonName", "localhost"),),))
        read_until(secure, b"Username: ")
        secure.sendall(b"yoda\r\n")
        read_until(secure, b"Password: ")
        secure.sendall(b"wise\r\n")
        read_until(secure, b"Welcome to chatservice, yoda!")
        plain = socket.create_connection(("127.0.0.1", self.tcp_port), timeout=10)
        self.addCleanup(plain.close)
        read_until(plain, b"Username: ")
        plain.sendall(b'{"type":"login","user":"hans","password":"falcon"}\n')
        read_until(plain, b'"success":true')
        return secure, plain

    def test_tls_user_chats_with_tcp_user(self) -> None:
        secure, plain = self.yoda_over_tls_and_hans_over_tcp()
        read_until(secure, b"hans logged in")
        secure.sendall(b"message hans over tls\r\n")
        self.assertIn(b'"message":"over tls"', read_until(plain, b"over tls"))

    def test_whois_tells_tls_from_plain(self) -> None:
        """An operator's whois says which connection is encrypted."""
        secure, plain = self.yoda_over_tls_and_hans_over_tcp()
        plain.sendall(b'{"type":"whois","target":"yoda","id":"w1"}\n')
        self.assertIn(b'"client":"text","tls":true', read_until(plain, b'"id":"w1"'))
        plain.sendall(b'{"type":"whois","target":"hans","id":"w2"}\n')
        self.assertIn(b'"client":"json","tls":false', read_until(plain, b'"id":"w2"'))

    def test_wrong_certificate_authority_is_refused(self) -> None:
        other = Path(tempfile.mkdtemp(prefix="chat-tls-"))
        self.addCleanup(shutil.rmtree, other, True)
        stranger = make_certificates(other)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.tls_connect(stranger["ca"])

    def test_wrong_host_name_is_refused(self) -> None:
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.tls_connect(self.certs["ca"], hostname="chat.example.org")


class TLSClientTests(TLSEndToEndTests):
    """chat-client --tls --ca verifies the server and chats over TLS."""

    def run_client(self, *options: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatservice.client", "127.0.0.1", str(self.tls_port), *options],
            input=stdin, capture_output=True, text=True, timeout=60,
            env=subprocess_environment(),
        )

    def test_client_over_tls(self) -> None:
        result = self.run_client("--tls", "--ca", str(self.certs["ca"]), stdin="yoda\nwise\nwhoelse\nlogout\n")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("Welcome to chatservice, yoda!", result.stdout)
        self.assertIn("No other users are online.", result.stdout)

    def test_client_refuses_unknown_authority(self) -> None:
        other = Path(tempfile.mkdtemp(prefix="chat-tls-"))
        self.addCleanup(shutil.rmtree, other, True)
        stranger = make_certificates(other)
        result = self.run_client("--tls", "--ca", str(stranger["ca"]), stdin="yoda\nwise\nlogout\n")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertNotIn("Welcome", result.stdout)

    # The server-side tests of the base class are not repeated here.
    test_tls_user_chats_with_tcp_user = None  # type: ignore[assignment]
    test_wrong_certificate_authority_is_refused = None  # type: ignore[assignment]
    test_wrong_host_name_is_refused = None  # type: ignore[assignment]
