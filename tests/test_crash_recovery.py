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

    def _kill_mid_burst(self, requests: list[dict[str, object]], acknowledges: str) -> set[int]:
        """Log in as yoda, send ``requests`` (each with an ``id``), kill -9 the
        server once 300 are acknowledged; the ids of every ``acknowledges`` reply."""
        self.server.start()
        sender = JsonClient(self.server.port)
        self.addCleanup(sender.close)
        sender.send({"type": "login", "user": "yoda", "password": "wise"})
        payload = b"".join(json.dumps(request).encode() + b"\n" for request in requests)
        # Sent from a thread while this one reads the acknowledgements, so the
        # server's replies never back up.
        writer = threading.Thread(target=self._send_quietly, args=(sender.sock, payload))
        writer.start()
        self.addCleanup(writer.join, 10)
        acknowledged: set[int] = set()

        def take(objects: list[dict[str, object]]) -> None:
            for obj in objects:
                if obj.get("type") == acknowledges and (
                    obj.get("stored") or acknowledges != "message_status"
                ):
                    acknowledged.add(int(obj["id"]))  # type: ignore[arg-type]

        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            take(sender.objects(0.05))
        self.server.kill()
        # Whatever the kernel still held for us was sent before the kill.
        take(sender.objects(1))
        self.assertGreater(len(acknowledged), 0)
        self.assertLess(len(acknowledged), len(requests), "the kill came in the middle of the burst")
        return acknowledged

    def test_acknowledged_broadcasts_survive_in_the_history(self) -> None:
        """A broadcast's history row is committed with its group, before its acknowledgement."""
        burst = 30000
        acknowledged = self._kill_mid_burst(
            [{"type": "broadcast", "message": f"b{i}", "id": i} for i in range(burst)],
            "broadcast_status",
        )
        self.server.start()
        reader = JsonClient(self.server.port)
        self.addCleanup(reader.close)
        reader.send({"type": "login", "user": "hans", "password": "falcon"})
        reader.send({"type": "read", "since": 0})
        kept: list[tuple[int, int]] = []
        for _ in range(burst // 100 + 2):
            pages = [obj for obj in reader.objects(10, idle=0.3) if obj.get("type") == "history"]
            if not pages:
                break
            page = pages[-1]
            kept += [
                (int(m["seq"]), int(str(m["message"])[1:]))  # type: ignore[index, call-overload]
                for m in page["messages"]  # type: ignore[union-attr]
            ]
            if not page.get("more"):
                break
            reader.send({"type": "read_next", "after": page["next"]})
        numbers = [number for _, number in kept]
        self.assertEqual(acknowledged - set(numbers), set(), "every acknowledged broadcast is in the history")
        self.assertEqual(numbers, sorted(numbers), "in the order they were sent")
        self.assertEqual([seq for seq, _ in kept], list(range(1, len(kept) + 1)), "numbered without gaps")

    def test_acknowledged_messages_survive_and_arrive_once(self) -> None:
        burst = 30000
        acknowledged = self._kill_mid_burst(
            [{"type": "message", "to": "hans", "message": f"m{i}", "id": i} for i in range(burst)],
            "message_status",
        )

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
