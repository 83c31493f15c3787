"""End to end: a real ``twistd chat`` server and real ``chat-client`` processes on loopback.

The clients (``python -m chatservice.client``) are driven through their
standard input, as a script would, and what they print is checked: direct
messages, private chat straight between clients (its text is in neither
client's ``--json-log`` transcript, i.e. it never crossed the server),
private messages still delivered after the target blocks the sender,
``stopprivate``, a private chat that idle connections to the peer port
cannot hold up (the port listens only on the address that reaches the server), a 20 MB file transfer (over perfect loopback and with
simulated loss), and how each way of ending sets the exit status.

Every wait has a deadline; everything listens on and talks to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.e2e_support import HOST, ChatServer, LineClient, subprocess_environment

WAIT = 20.0
"""Seconds to wait for any one expected line."""
BIG = 20_000_000
"""Bytes of the large file sent end to end."""
TRANSFER_WAIT = 120.0


class ClientProcess:
    """One ``chat-client`` in a subprocess, driven through standard input."""

    def __init__(self, name: str, port: int, directory: Path, *options: str) -> None:
        self.name = name
        self.transcript = directory / f"{name}.jsonl"
        self.downloads = directory / f"{name}-downloads"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "chatservice.client", HOST, str(port),
                "--download-dir", str(self.downloads),
                "--json-log", str(self.transcript),
                *options,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=subprocess_environment(),
            cwd=directory,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self.output = ""
        self._read_up_to = 0

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def _read(self, deadline: float) -> bool:
        """Read what the client printed, waiting until ``deadline``; ``False`` at EOF or timeout."""
        assert self.process.stdout is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(remaining):
                return False
        data = self.process.stdout.read()
        if not data:
            return False
        self.output += data.decode("utf-8", "replace")
        return True

    def expect(self, text: str, timeout: float = WAIT) -> str:
        """Wait for a line containing ``text`` printed after the last one expected; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.output.find(text, self._read_up_to)
            end = self.output.find("\n", found) if found >= 0 else -1
            if end >= 0:
                start = self.output.rfind("\n", 0, found) + 1
                self._read_up_to = end + 1
                return self.output[start:end]
            if not self._read(deadline):
                raise AssertionError(
                    f"{self.name} did not print {text!r} within {timeout:g} s; it printed:\n"
                    f"{self.output}"
                )

    def log_in(self, password: str) -> None:
        self.send(self.name)
        self.send(password)
        self.expect(f"Welcome to chatservice, {self.name}!")

    def finish(self, timeout: float = WAIT) -> int:
        """Close standard input (the client logs out) and return the exit status."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        return self.wait(timeout)

    def wait(self, timeout: float = WAIT) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def p2p_port(self) -> int:
        """The private chat port this client sent in its login."""
        for line in self.sent_to_or_from_server().splitlines():
            entry = json.loads(line)
            if entry["direction"] == "sent" and "p2p_port" in entry["message"]:
                return int(entry["message"]["p2p_port"])
        raise AssertionError(f"{self.name} sent no p2p_port")

    def sent_to_or_from_server(self) -> str:
        """Every JSON message this client exchanged with the server, as text."""
        if not self.transcript.exists():
            return ""
        return self.transcript.read_text(encoding="utf-8")


class EndToEndTestCase(unittest.TestCase):
    timeout = 300
    server_timeout = 120.0

    def setUp(self) -> None:
        self.server = ChatServer(timeout=self.server_timeout)
        self.server.start()
        self.addCleanup(self.server.stop)
        temporary = tempfile.TemporaryDirectory(prefix="chat-client-e2e-")
        self.addCleanup(temporary.cleanup)
        self.directory = Path(temporary.name)
        self.clients: list[ClientProcess] = []

    def tearDown(self) -> None:
        for client in self.clients:
            client.kill()

    def client(self, name: str, *options: str) -> ClientProcess:
        client = ClientProcess(name, self.server.port, self.directory, *options)
        self.clients.append(client)
        return client

    def make_file(self, name: str, size: int, seed: int = 1) -> Path:
        path = self.directory / name
        path.write_bytes(random.Random(seed).randbytes(size))
        return path

    def assertSameFile(self, sent: Path, received: Path) -> None:
        self.assertEqual(
            hashlib.sha256(received.read_bytes()).hexdigest(),
            hashlib.sha256(sent.read_bytes()).hexdigest(),
        )


class ChatTests(EndToEndTestCase):
    def test_direct_private_and_stop(self) -> None:
        yoda, hans = self.client("yoda"), self.client("hans")
        yoda.log_in("wise")
        hans.log_in("falcon")
        yoda.expect("hans logged in")

        yoda.send("message hans Hey Dude")
        self.assertRegex(hans.expect("yoda: Hey Dude"), r"^\[\d\d:\d\d\] yoda: Hey Dude$")

        yoda.send("startprivate hans")
        yoda.expect("Waiting for hans to accept the private chat.")
        hans.expect("yoda wants to chat privately with you: type accept or decline")
        hans.send("accept")
        yoda.expect("Private messaging with hans started.")
        hans.expect("Private messaging with yoda started.")

        secret = f"the password is {random.Random().getrandbits(64):x}"
        yoda.send(f"private hans {secret}")
        self.assertRegex(hans.expect(secret), rf"^\[\d\d:\d\d\] yoda\(private\): {secret}$")
        hans.send("private yoda got it")
        yoda.expect("hans(private): got it")

        hans.send("block yoda")
        hans.expect("yoda is now blocked.")
        yoda.send("message hans are you there?")
        yoda.expect("Your message could not be delivered as the recipient has blocked you.")
        yoda.send("private hans still private after the block")
        hans.expect("yoda(private): still private after the block")

        yoda.send("stopprivate hans")
        yoda.expect("Private messaging with hans stopped.")
        hans.expect("Private messaging with yoda ended.")
        yoda.send("private hans anyone?")
        yoda.expect("Error. Private messaging to hans not enabled")

        self.assertEqual(yoda.finish(), 0)
        self.assertEqual(hans.finish(), 0)
        yoda.expect("Goodbye, yoda!")
        hans.expect("Goodbye, hans!")

        # The private text never crossed the server: it is in neither
        # client's transcript of everything exchanged with the server.
        self.assertIn('"type": "startprivate"', yoda.sent_to_or_from_server())
        self.assertIn('"type": "private_request"', hans.sent_to_or_from_server())
        for client in (yoda, hans):
            transcript = client.sent_to_or_from_server()
            self.assertNotIn(secret, transcript)
            self.assertNotIn("still private after the block", transcript)
        self.assertIn("Hey Dude", yoda.sent_to_or_from_server())
        self.assertNotIn(secret, self.server.log())

    def test_idle_connections_to_the_peer_port(self) -> None:
        # Issue 15, item 10: 17 idle connections (no login needed) made the
        # next private chat fail for about 10 s.
        yoda, hans = self.client("yoda"), self.client("hans")
        yoda.log_in("wise")
        hans.log_in("falcon")
        port = hans.p2p_port()
        with contextlib.ExitStack() as stack:
            idle = [
                stack.enter_context(socket.create_connection((HOST, port), timeout=WAIT))
                for _ in range(17)
            ]
            # The port is open only on the address hans reaches the server from.
            with socket.socket() as elsewhere:
                elsewhere.settimeout(WAIT)
                self.assertNotEqual(elsewhere.connect_ex(("127.0.0.2", port)), 0)
            started = time.monotonic()
            yoda.send("startprivate hans")
            hans.expect("yoda wants to chat privately with you")
            hans.send("accept")
            yoda.expect("Private messaging with hans started.")
            hans.expect("Private messaging with yoda started.")
            self.assertLess(time.monotonic() - started, 5.0)
            for connection in idle:
                self.assertEqual(connection.recv(100), b"")
            self.assertLess(time.monotonic() - started, 10.0)
        yoda.send("private hans still here")
        hans.expect("yoda(private): still here")
        self.assertEqual(yoda.finish(), 0)
        self.assertEqual(hans.finish(), 0)

    def test_private_chat_with_a_telnet_user_is_refused(self) -> None:
        yoda = self.client("yoda")
        yoda.log_in("wise")
        with LineClient(self.server.port) as luke:
            luke.login("luke", "jedi")
            yoda.expect("luke logged in")
            yoda.send("startprivate luke")
            yoda.expect("Error. luke is not using a client that accepts private chat.")
            yoda.send("sendfile luke /etc/hostname")
            yoda.expect("Error. luke is not using a client that accepts files.")
        yoda.send("startprivate vader")
        yoda.expect("Error.")
        self.assertEqual(yoda.finish(), 0)


class FileTransferTests(EndToEndTestCase):
    def transfer(self, *options: str) -> float:
        yoda, hans = self.client("yoda", *options), self.client("hans", *options)
        yoda.log_in("wise")
        hans.log_in("falcon")
        big = self.make_file("lecture1.mp4", BIG)
        started = time.monotonic()
        yoda.send(f"sendfile hans {big}")
        yoda.expect("Sending lecture1.mp4 (20.0 MB) to hans.")
        hans.expect("yoda is sending you lecture1.mp4 (20.0 MB): type accept or decline")
        hans.send("accept")
        hans.expect("Received lecture1.mp4 from yoda", TRANSFER_WAIT)
        yoda.expect("Sent lecture1.mp4 to hans", TRANSFER_WAIT)
        took = time.monotonic() - started
        self.assertSameFile(big, hans.downloads / "yoda_lecture1.mp4")
        self.assertEqual(sorted(p.name for p in hans.downloads.iterdir()), ["yoda_lecture1.mp4"])

        small = self.make_file("notes.txt", 10_000, seed=2)
        hans.send(f"UPD yoda {small}")
        yoda.expect("hans is sending you notes.txt")
        yoda.send("accept hans")
        yoda.expect("Received notes.txt from hans")
        hans.expect("Sent notes.txt to yoda")
        self.assertSameFile(small, yoda.downloads / "hans_notes.txt")

        self.assertEqual(yoda.finish(), 0)
        self.assertEqual(hans.finish(), 0)
        return took

    def test_twenty_megabytes(self) -> None:
        took = self.transfer()
        print(f"\n20 MB over loopback: {took:.2f} s")

    def test_twenty_megabytes_with_simulated_loss(self) -> None:
        took = self.transfer("--udp-loss", "0.05")
        print(f"\n20 MB over loopback, 5% loss + 5% duplicates + 5% reordered each way: {took:.2f} s")


class EndingTests(EndToEndTestCase):
    server_timeout = 4.0

    def test_inactivity_timeout_exits_3(self) -> None:
        yoda = self.client("yoda")
        yoda.log_in("wise")
        yoda.expect("You have been logged out after 4 seconds of inactivity.", 10)
        self.assertEqual(yoda.wait(), 3)

    def test_server_shutdown_exits_4_and_closes_private_chats(self) -> None:
        yoda, hans = self.client("yoda"), self.client("hans")
        yoda.log_in("wise")
        hans.log_in("falcon")
        yoda.send("startprivate hans")
        hans.expect("yoda wants to chat privately with you")
        hans.send("accept")
        hans.expect("Private messaging with yoda started.")
        self.server.process.send_signal(signal.SIGTERM)
        yoda.expect("The server is shutting down.")
        self.assertEqual(yoda.wait(), 4)
        self.assertEqual(hans.wait(), 4)
        self.assertIn("Private messaging with", hans.output + yoda.output)

    def test_dropped_server_exits_1(self) -> None:
        yoda = self.client("yoda")
        yoda.log_in("wise")
        self.server.process.kill()
        yoda.expect("Error. The")
        self.assertEqual(yoda.wait(), 1)

    def test_wrong_password_then_logout(self) -> None:
        yoda = self.client("yoda")
        yoda.send("yoda")
        yoda.send("nope")
        yoda.expect("Invalid Password. Please try again")
        yoda.send("wise")
        yoda.expect("Welcome to chatservice, yoda!")
        yoda.send("logout")
        yoda.expect("Goodbye, yoda!")
        self.assertEqual(yoda.wait(), 0)
        # Both logins were SCRAM-SHA-256: no password in what the client sent.
        transcript = [json.loads(line) for line in yoda.transcript.read_text().splitlines()]
        logins = [t["message"] for t in transcript
                  if t["direction"] == "sent" and t["message"].get("mechanism") == "SCRAM-SHA-256"]
        self.assertEqual([m["type"] for m in logins], ["salt", "login", "salt", "login"])
        self.assertFalse(any("password" in t["message"] for t in transcript))
        self.assertNotIn("nope", yoda.transcript.read_text())

    def test_unreachable_server_exits_1(self) -> None:
        port = self.server.port
        self.server.stop()
        client = ClientProcess("yoda", port, self.directory)
        self.clients.append(client)
        client.expect("Error. Could not connect to the server")
        self.assertEqual(client.wait(), 1)
