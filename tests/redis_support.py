"""A real ``redis-server`` for the tests: started on 127.0.0.1 and a free port, stopped after.

:class:`RedisServer` runs Debian's ``redis-server`` with no persistence and
no configuration file, in a temporary directory, and can be stopped and
started again on the same port (the tests of a Redis restart).  Without the
binary the tests that need it fail, unless ``CHAT_ALLOW_SKIP_REDIS=1``
(``.ci/run`` installs ``redis-server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_binary() -> str:
    """The ``redis-server`` to run; skips (when allowed) or fails without one."""
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CHAT_ALLOW_SKIP_REDIS") == "1":
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    return found


class RedisServer:
    """One ``redis-server`` on 127.0.0.1.

    :param port: the port (default: a free one, kept across restarts).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="chat-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``--redis`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        log = open(self.directory / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                "--protected-mode", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        """Whether the server answers ``PING`` now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        """What the server logged."""
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (idempotent); its data is gone (no persistence)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def cleanup(self) -> None:
        """Stop, and remove the temporary directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
