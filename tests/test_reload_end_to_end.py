"""End to end: a real ``twistd chat`` reloads its ban file, certificate, limits and accounts on SIGHUP.

The server listens on ``tcp:`` and ``ssl:`` with a certificate made for the
test, a ban file, a limits file and a credentials file.  With connections
open over both, the files are changed and the server sent ``SIGHUP``: new
connections see the new certificate, bans, limits and accounts; the open
ones chat on (except the one from the address now banned, which is told and
closed).  A second ``SIGHUP`` with bad files is refused, logged, and leaves
the previous settings in force.  An operator's ``rehash`` reloads the same
way, and a reload leaves the operators' own (in-band) bans in force.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.certs import make_certificates
from tests.e2e_support import (
    INVALID_COMMAND,
    LineClient,
    launch_twistd,
    loopback_source,
    stop_process,
)

BANNED = "Your address is banned from this server."
OTHER_ADDRESS = "127.0.0.2"


def trusting(ca: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca``."""
    return ssl.create_default_context(cafile=str(ca))


class ReloadEndToEndTests(unittest.TestCase):
    def setUp(self) -> None:
        if not loopback_source(OTHER_ADDRESS):
            raise unittest.SkipTest(f"this host cannot connect from {OTHER_ADDRESS}")
        self.work = work = Path(tempfile.mkdtemp(prefix="chat-reload-e2e-"))
        self.addCleanup(shutil.rmtree, work, True)
        self.certs = [make_certificates(self.directory(name)) for name in ("first", "second", "third")]
        self.live = self.directory("live")
        self.install(self.certs[0])
        self.ban_file = work / "bans.txt"
        self.ban_file.write_text("# nobody yet\n203.0.113.0/24\n", encoding="utf-8")
        self.limits_file = work / "limits.conf"
        self.limits_file.write_text("max-per-address = 10\n", encoding="utf-8")
        self.credentials = work / "credentials.txt"
        self.credentials.write_text("yoda wise\nhans falcon\nluke jedi\n", encoding="utf-8")
        self.process, (self.tcp_port, self.tls_port) = launch_twistd(
            [
                "-n", "--pidfile=", "chat",
                "--listen", "tcp:0:interface=127.0.0.1",
                "--listen",
                f"ssl:0:interface=127.0.0.1:privateKey={self.live / 'key.pem'}"
                f":certKey={self.live / 'cert.pem'}",
                "--ban-file", str(self.ban_file),
                "--limits", str(self.limits_file),
                "--credentials", str(self.credentials),
                "--data-dir", str(work / "data"),
                "--greeting-delay", "0",
                "--operator", "yoda",
            ],
            work,
            ports=2,
        )
        self.addCleanup(stop_process, self.process)
        (self.log_path,) = work.glob("twistd-*.log")

    def directory(self, name: str) -> Path:
        path = self.work / name
        path.mkdir()
        return path

    def install(self, certs: dict[str, Path], key: dict[str, Path] | None = None) -> None:
        """Put ``certs``' certificate (and ``key``'s key, default its own) where the listener reads them."""
        # Written beside and renamed, as a certificate renewal tool does.
        for name, source in (("cert.pem", certs["cert"]), ("key.pem", (key or certs)["key"])):
            shutil.copy(source, self.live / f".{name}")
            os.replace(self.live / f".{name}", self.live / name)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def sighup(self, expect: str, timeout: float = 20.0) -> str:
        """Send SIGHUP and wait for the reload's last log line (matching ``expect``); the reload's lines."""
        before = len(self.log())
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log()[before:]
            if re.search(expect, lines):
                return lines
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {expect!r} after SIGHUP; log:\n{self.log()}")
            time.sleep(0.05)

    def tcp(self, username: str | None = None, source: str | None = None) -> LineClient:
        client = LineClient(self.tcp_port, source=source)
        self.addCleanup(client.close)
        if username is not None:
            client.login(username, {"yoda": "wise", "hans": "falcon", "luke": "jedi", "rey": "scavenger"}[username])
        return client

    def tls(self, ca: Path, username: str | None = None) -> LineClient:
        client = LineClient(self.tls_port, tls=trusting(ca))
        self.addCleanup(client.close)
        if username is not None:
            client.login(username, {"yoda": "wise", "leia": "princess"}[username])
        return client

    def assert_chat(self, sender: LineClient, receiver: LineClient, text: str, receiver_name: str) -> None:
        sender.send(f"message {receiver_name} {text}")
        receiver.read_until(text)

    def test_sighup_reloads_and_a_bad_file_keeps_the_previous_settings(self) -> None:
        # Open connections: over TLS (first certificate), over TCP, and from the address to be banned.
        yoda = self.tls(self.certs[0]["ca"], "yoda")
        luke = self.tcp("luke")
        hans = self.tcp("hans", source=OTHER_ADDRESS)
        self.assert_chat(yoda, luke, "before the reload", "luke")

        # New certificate, bans, limits and account; then SIGHUP.
        self.install(self.certs[1])
        self.ban_file.write_text(f"203.0.113.0/24\n{OTHER_ADDRESS}  # hans, go away\n", encoding="utf-8")
        self.limits_file.write_text("max-per-address = 4\n", encoding="utf-8")
        with self.credentials.open("a", encoding="utf-8") as f:
            f.write("rey scavenger\n")
        lines = self.sighup(r"ended 1 connection\(s\) from 127\.0\.0\.2")
        self.assertIn("Reload asked for by SIGHUP", lines)
        self.assertIn(f"Reload (SIGHUP): ban added: {OTHER_ADDRESS}/32", lines)
        self.assertIn("Reload (SIGHUP): limit max-per-address: 10 -> 4", lines)
        self.assertIn(f"Reload (SIGHUP): account rey imported from {self.credentials}", lines)
        self.assertRegex(lines, r"Reload \(SIGHUP\): certificate of ssl:0:.*: now CN=localhost, expires .* sha256 ")

        # The banned address's connection is told and closed; the others chat on.
        self.assertIn(BANNED, hans.wait_closed().decode())
        self.assert_chat(yoda, luke, "the TLS session lives on", "luke")
        self.assert_chat(luke, yoda, "and so does TCP", "yoda")
        # New connections: the new certificate (the old CA no longer verifies it), the new bans,
        # the new account, the new per-address cap.
        with self.assertRaises(ssl.SSLCertVerificationError):
            LineClient(self.tls_port, tls=trusting(self.certs[0]["ca"]))
        leia_tls = self.tls(self.certs[1]["ca"])
        leia_tls.greeted()
        self.assertIn(BANNED, self.tcp(source=OTHER_ADDRESS).wait_closed().decode())
        rey = self.tcp("rey")
        # 127.0.0.1 has yoda, luke, leia_tls and rey's connections: a fifth is one too many.
        self.assertIn("Too many connections from your address.", self.tcp().wait_closed().decode())
        leia_tls.close()
        rey.close()

        # A second SIGHUP with bad files: a key that does not match its certificate, a bad ban line.
        self.install(self.certs[2], key=self.certs[1])
        self.ban_file.write_text(f"{OTHER_ADDRESS}\nno-such-address\n", encoding="utf-8")
        lines = self.sighup(r"refused: certificate of .*the previous settings stay in force")
        self.assertRegex(lines, r"refused: --ban-file .*bans\.txt: .*no-such-address.*the previous settings stay in force")
        self.assertNotIn("Reload (SIGHUP): ban", lines)
        self.assertNotIn("Reload (SIGHUP): certificate", lines)
        # Everything as after the first reload; the server and its connections live on.
        self.assertIsNone(self.process.poll())
        self.tls(self.certs[1]["ca"]).greeted()
        self.assertIn(BANNED, self.tcp(source=OTHER_ADDRESS).wait_closed().decode())
        self.assert_chat(yoda, luke, "after the refused reload", "luke")

    def test_operator_rehash_keeps_the_in_band_bans(self) -> None:
        """``rehash`` is the server's reload; the bans an operator set are no file's and stay."""
        yoda = self.tcp("yoda")
        luke = self.tcp("luke")
        hans = self.tcp("hans", source=OTHER_ADDRESS)
        yoda.sync()
        luke.sync()
        hans.sync()
        yoda.send(f"ban {OTHER_ADDRESS} spam")
        self.assertIn("You have been banned from this server by yoda", hans.wait_closed().decode())
        yoda.sync()
        luke.sync()

        luke.send("rehash")
        self.assertEqual(luke.read_line(), INVALID_COMMAND)
        self.ban_file.write_text("198.51.100.0/24\n", encoding="utf-8")
        yoda.send("rehash")
        self.assertEqual(
            yoda.read_lines(3),
            [
                "Configuration reloaded:",
                "  ban added: 198.51.100.0/24",
                "  ban lifted: 203.0.113.0/24",
            ],
        )
        self.assertIn("Reload asked for by yoda", self.log())
        # The operator's ban outlives the reload of the ban file.
        refused = self.tcp(source=OTHER_ADDRESS).wait_closed().decode()
        self.assertIn("Your address is banned from this server for good (reason: spam).", refused)
        yoda.send("bans")
        self.assertRegex(yoda.read_line(), rf"^#1 address {re.escape(OTHER_ADDRESS)}, by yoda at ")
        # A bad ban file: the operator is told why, and nothing changes.
        self.ban_file.write_text("no-such-address\n", encoding="utf-8")
        yoda.send("rehash")
        self.assertRegex(yoda.read_line(), r"^Error\. Nothing was reloaded: --ban-file .*no-such-address")
        self.assert_chat(yoda, luke, "still here", "luke")
