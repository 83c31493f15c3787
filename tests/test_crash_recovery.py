"""``kill -9`` of the real server loses nothing it acknowledged, and delivers nothing twice."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from twisted.trial import unittest

from tests.e2e_support import launch_twistd

class Server:
    """``twistd -n chat`` on a data directory that outlives the process."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.process, (self.port,) = launch_twistd(
            [
                "-n", "--pidfile=", "chat",
                "--listen", "tcp:0:interface=127.0.0.1",
                "--credentials", str(self.work / "credentials.txt"),
                "--data-dir", str(self.work / "data"),
                "--flood-burst", "100000", "--flood-rate", "100000",
                "--max-offline", "100000",
            ],
            self.work,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class JsonClient:
    """A blocking JSON-lines client with a deadline on every read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, obj: dict[str, object]) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def objects(self, timeout: float, idle: float | None = None) -> list[dict[str, object]]:
        """Every JSON object received within ``timeout`` seconds (until the peer
        closes, or nothing came for ``idle`` seconds after the first object)."""
        self.sock.settimeout(0.2)
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if idle is not None and found and time.monotonic() - last > idle:
                break
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            last = time.monotonic()
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            found += [json.loads(line) for line in lines if line.startswith(b"{")]
        return found

    def close(self) -> None:
        self.sock.close()


class KillNineTests(unittest.TestCase):
    """SIGKILL in the middle of a burst of offline messages."""

    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="chat-crash-"))
        self.addCleanup(shutil.rmtree, self.work, True)
        (self.work / "credentials.txt").write_text("yoda wise\nhans falcon\n")
        self.server = Server(self.work)
        self.addCleanup(self.server.stop)

    @staticmethod
    def _send_quietly(sock: socket.socket, payload: bytes) -> None:
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server was killed mid-send: expected

    def test_acknowledged_messages_survive_and_arrive_once(self) -> None:
        self.server.start()
        sender = JsonClient(self.server.port)
        self.addCleanup(sender.close)
        sender.send({"type": "login", "user": "yoda", "password": "wise"})
        burst = 30000
        payload = b"".join(
            json.dumps({"type": "message", "to": "hans", "message": f"m{i}", "id": i}).encode()
            + b"\n"
            for i in range(burst)
        )
        # Sent from a thread while this one reads the acknowledgements, so the
        # server's replies never back up.
        writer = threading.Thread(target=self._send_quietly, args=(sender.sock, payload))
        writer.start()
        self.addCleanup(writer.join, 10)
        acknowledged: set[int] = set()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            for obj in sender.objects(0.05):
                if obj.get("type") == "message_status" and obj.get("stored"):
                    acknowledged.add(int(obj["id"]))  # type: ignore[arg-type]
        self.server.kill()
        # Whatever the kernel still held for us was sent before the kill.
        for obj in sender.objects(1):
            if obj.get("type") == "message_status" and obj.get("stored"):
                acknowledged.add(int(obj["id"]))  # type: ignore[arg-type]
        self.assertGreater(len(acknowledged), 0)
        self.assertLess(len(acknowledged), burst, "the kill came in the middle of the burst")

        self.server.start()
        receiver = JsonClient(self.server.port)
        self.addCleanup(receiver.close)
        receiver.send({"type": "login", "user": "hans", "password": "falcon"})
        received = [
            obj["message"] for obj in receiver.objects(20, idle=1)
            if obj.get("type") == "message" and obj.get("offline")
        ]
        numbers = [int(str(text)[1:]) for text in received]
        self.assertEqual(len(numbers), len(set(numbers)), "nothing delivered twice")
        self.assertEqual(acknowledged - set(numbers), set(), "every acknowledged message arrived")
        self.assertEqual(numbers, sorted(numbers), "in the order they were sent")
        receiver.close()

        # Delivered means removed: a second login gets nothing again.
        again = JsonClient(self.server.port)
        self.addCleanup(again.close)
        time.sleep(0.2)
        again.send({"type": "login", "user": "hans", "password": "falcon"})
        replies = again.objects(5, idle=0.5)
        self.assertTrue(any(obj.get("type") == "login" and obj.get("success") for obj in replies))
        self.assertEqual([obj for obj in replies if obj.get("type") == "message"], [])
