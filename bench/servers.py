"""Starting and stopping servers for benchmarks, on loopback, in subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_PORT_LINE = re.compile(rb"ChatFactory starting on (\d+)")
_WEB_PORT_LINE = re.compile(rb"Site \(InputGuardFactory\) starting on (\d+)")
_TLS_PORT_LINE = re.compile(rb"ChatFactory \(TLS\) starting on (\d+)")
_METRICS_PORT_LINE = re.compile(rb"QuietSite starting on (\d+)")
_SERVING_LINE = b"Chat service started:"
"""Logged once the state is loaded: before it the server refuses connections ("The server is
starting"), which a cluster node, joining Redis and reading PostgreSQL, does for longer."""


class RunningServer:
    """A server process: its port, its pid, and a way to stop it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        workdir: tempfile.TemporaryDirectory[str],
        web_port: int = 0,
        tls_port: int = 0,
        metrics_port: int = 0,
    ) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir
        self.web_port = web_port
        """The ``--web`` listener's port (the WebSocket is at ``/ws``); 0 without ``--web``."""
        self.tls_port = tls_port
        """The ``ssl:`` listener's port; 0 without ``tls``."""
        self.metrics_port = metrics_port
        """The ``--metrics`` listener's port (``/metrics``); 0 without ``metrics``."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.workdir.cleanup()


def start_chatservice(
    accounts: Mapping[str, str],
    extra: Sequence[str] = (),
    cpu: int | None = None,
    start_timeout: float = 30.0,
    web: bool = False,
    root: Path = ROOT,
    tls: tuple[Path, Path] | None = None,
    metrics: bool = False,
) -> RunningServer:
    """Start ``twistd -n chat`` on a free loopback port with ``accounts``.

    :param cpu: pin the server to this CPU with ``taskset`` when given.
    :param web: also serve the page and its WebSocket (``--web``) on another free port.
    :param tls: ``(private key, certificate)``: also listen with TLS
        (``--listen ssl:...``) on another free port.
    :param metrics: also serve ``/metrics`` (``--metrics``) on another free port.
    :param root: the source tree whose ``chatservice`` runs (default: this
        one; another, e.g. an older commit's ``git archive``, to compare).
    """
    workdir = tempfile.TemporaryDirectory(prefix="chat-bench-")
    work = Path(workdir.name)
    (work / "credentials.txt").write_text(
        "".join(f"{u} {p}\n" for u, p in accounts.items()), encoding="utf-8"
    )
    command = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "chat", "--listen", f"tcp:0:interface={HOST}",
        "--credentials", str(work / "credentials.txt"), "--data-dir", str(work / "data"),
        *(["--web", f"tcp:0:interface={HOST}"] if web else []),
        *(["--listen", f"ssl:0:interface={HOST}:privateKey={tls[0]}:certKey={tls[1]}"] if tls else []),
        *(["--metrics", f"tcp:0:interface={HOST}"] if metrics else []),
        *extra,
    ]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    log_path = work / "server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        log = log_path.read_bytes()
        match = _PORT_LINE.search(log)
        web_match = _WEB_PORT_LINE.search(log)
        tls_match = _TLS_PORT_LINE.search(log)
        metrics_match = _METRICS_PORT_LINE.search(log)
        serving = _SERVING_LINE in log
        if match and serving and (web_match or not web) and (tls_match or not tls) and (metrics_match or not metrics):
            return RunningServer(
                process,
                int(match.group(1)),
                workdir,
                int(web_match.group(1)) if web_match else 0,
                int(tls_match.group(1)) if tls_match else 0,
                int(metrics_match.group(1)) if metrics_match else 0,
            )
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"chatservice did not start:\n{log_path.read_text(errors='replace')}")
