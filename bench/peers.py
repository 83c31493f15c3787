"""The servers under test, started on loopback with generated configuration.

Each ``start_*`` function returns a :class:`Peer`: its port, its process id
(for ``/proc``), what was raised above the shipped defaults (printed with the
results), and a ``stop``.  Every server is pinned with ``taskset`` to one
core; the load generator gets the other.

- ``chatservice``: ``twistd -n chat`` (:func:`bench.servers.start_chatservice`),
  text protocol, the SQLite store as shipped, accounts in a generated
  credentials file with plain passwords.
- ``twistd words``: ``twistd -n -y bench/words.tac`` (the ``.tac`` creates
  the room, since ``twistd words --group`` is broken on Python 3).
- ``ngircd``: ``ngircd -n -f <generated ngircd.conf>``; skipped with a notice
  when the binary is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from bench.servers import HOST, ROOT, start_chatservice

ROOM = "bench"
PASSWORD_FORMAT = "pw-{name}"
"""Every account's password (plain text, generated)."""

CHAT_RAISED = {
    "--max-connections": "100000",
    "--max-per-address": "100000",
    "--flood-burst": "1000000",
    "--flood-rate": "1000000",
    "--timeout": "3600",
    "--login-deadline": "600",
}
"""chatservice limits that would throttle one load generator, and what they are raised to.

The output limits (``--output-soft-limit``/``--output-hard-limit``) stay as
shipped: they never throttle a client that reads, and they are what bounds
the server's memory against a client that does not (workload 5)."""

NGIRCD_LIMITS = {
    "MaxConnections": "0",
    "MaxConnectionsIP": "0",
    "MaxPenaltyTime": "0",
    "MaxJoins": "0",
    "MaxNickLength": "30",
    "PingTimeout": "3600",
    "PongTimeout": "3600",
    "ConnectRetry": "60",
}
"""ngIRCd's ``[Limits]``: per-IP and connection caps off, flood penalties off."""


@dataclass
class Peer:
    name: str
    protocol: str
    port: int
    pid: int
    version: str
    raised: dict[str, str]
    stop: Callable[[], None]
    log_path: Path
    irc_pass: bool = False
    notes: list[str] = field(default_factory=list)
    web_port: int = 0
    """chatservice's ``--web`` port (its WebSocket is ``/ws``), when started with one."""

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def accounts_for(names: list[str]) -> dict[str, str]:
    return {name: PASSWORD_FORMAT.format(name=name) for name in names}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_log(process: subprocess.Popen[bytes], log_path: Path, pattern: re.Pattern[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search(log_path.read_bytes()) if log_path.exists() else None
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


def _wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"server did not listen on {port}:\n{log_path.read_text(errors='replace')[-3000:]}")


def twisted_version() -> str:
    import twisted

    return twisted.__version__


def ngircd_binary() -> str | None:
    return shutil.which("ngircd") or (
        "/usr/sbin/ngircd" if os.access("/usr/sbin/ngircd", os.X_OK) else None
    )


def ngircd_version() -> str | None:
    binary = ngircd_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


CHAT_EXPERIMENT: list[str] = []
"""Extra ``twistd chat`` options for an experiment (``bench.run --server-args``), recorded with the run."""


def start_chat(
    names: list[str], cpu: int | None, web: bool = False, options: Sequence[str] = (), store: str = "sqlite store"
) -> Peer:
    """chatservice as :mod:`bench.run` measures it; with ``web``, also ``--web`` (:mod:`bench.web`).

    :param options: more ``twistd chat`` options (:mod:`bench.cluster`: ``--redis``, ``--store``, ``--node-name``).
    :param store: what the version line says about the store.
    """
    extra = [item for pair in CHAT_RAISED.items() for item in pair] + CHAT_EXPERIMENT + list(options)
    server = start_chatservice(accounts_for(names), extra=extra, cpu=cpu, web=web)
    from chatservice.version import SERVER_VERSION

    return Peer(
        name="chatservice",
        protocol="chat",
        port=server.port,
        pid=server.pid,
        version=f"chatservice {SERVER_VERSION} (twistd -n chat{' --web' if web else ''}, {store})",
        raised=dict(CHAT_RAISED, **({"experiment": " ".join(CHAT_EXPERIMENT)} if CHAT_EXPERIMENT else {})),
        stop=server.stop,
        log_path=Path(server.workdir.name) / "server.log",
        web_port=server.web_port,
    )


def start_words(names: list[str], cpu: int | None) -> Peer:
    workdir = tempfile.TemporaryDirectory(prefix="words-bench-")
    work = Path(workdir.name)
    accounts = work / "accounts.txt"
    accounts.write_text("".join(f"{u} {p}\n" for u, p in accounts_for(names).items()), encoding="utf-8")
    log_path = work / "server.log"
    command = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "-y", str(ROOT / "bench" / "words.tac"),
    ]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    env = dict(
        os.environ,
        BENCH_WORDS_LISTEN=f"tcp:0:interface={HOST}",
        BENCH_WORDS_ACCOUNTS=str(accounts),
        BENCH_WORDS_GROUP=ROOM,
    )
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    port = _wait_for_log(process, log_path, re.compile(rb"IRCFactory starting on (\d+)"), 30)

    def stop() -> None:
        _stop_process(process)
        workdir.cleanup()

    return Peer(
        name="twistd words",
        protocol="irc",
        port=port,
        pid=process.pid,
        version=f"Twisted {twisted_version()} twisted.words (twistd -n -y bench/words.tac)",
        raised={"(none)": "twistd words has no connection, flood or output limits"},
        stop=stop,
        log_path=log_path,
        irc_pass=True,
    )


NGIRCD_CONF = """\
[Global]
    Name = bench.ngircd.local
    Info = chatservice benchmark peer
    Listen = {host}
    Ports = {port}
    MotdPhrase = benchmark
    PidFile = {work}/ngircd.pid
    ServerUID = {uid}
    ServerGID = {gid}
    HelpFile = {work}/help.txt

[Limits]
{limits}

[Options]
    DNS = no
    Ident = no
    PAM = no
    AllowRemoteOper = no
    MorePrivacy = no
    OperCanUseMode = no
    RequireAuthPing = no
    SyslogFacility = local7

[Channel]
    Name = #{room}
    Topic = benchmark room
    Modes = +n
"""


def start_ngircd(names: list[str], cpu: int | None) -> Peer:
    binary = ngircd_binary()
    if binary is None:
        raise FileNotFoundError("ngircd is not installed (apt-get install ngircd)")
    workdir = tempfile.TemporaryDirectory(prefix="ngircd-bench-")
    work = Path(workdir.name)
    (work / "help.txt").write_text("benchmark\n", encoding="utf-8")
    port = _free_port()
    conf = work / "ngircd.conf"
    conf.write_text(
        NGIRCD_CONF.format(
            host=HOST, port=port, work=work, uid=os.getuid(), gid=os.getgid(), room=ROOM,
            limits="\n".join(f"    {k} = {v}" for k, v in NGIRCD_LIMITS.items()),
        ),
        encoding="utf-8",
    )
    log_path = work / "server.log"
    command = [binary, "-n", "-f", str(conf)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=work, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    _wait_for_port(process, port, 30, log_path)

    def stop() -> None:
        _stop_process(process)
        workdir.cleanup()

    raised = dict(NGIRCD_LIMITS)
    raised["DNS/Ident/PAM"] = "off"
    return Peer(
        name="ngircd",
        protocol="irc",
        port=port,
        pid=process.pid,
        version=ngircd_version() or "ngIRCd",
        raised=raised,
        stop=stop,
        log_path=log_path,
        irc_pass=False,
        notes=["no passwords (PAM off, no server password): IRC registration is NICK/USER"],
    )


STARTERS: Mapping[str, Callable[[list[str], int | None], Peer]] = {
    "chatservice": start_chat,
    "words": start_words,
    "ngircd": start_ngircd,
}
SERVER_LABELS = {"chatservice": "chatservice", "words": "twistd words", "ngircd": "ngircd"}


def available_servers(wanted: list[str]) -> tuple[list[str], list[str]]:
    """The servers of ``wanted`` that can run here, and notices for those that cannot."""
    ok, notices = [], []
    for name in wanted:
        if name == "ngircd" and ngircd_binary() is None:
            notices.append("ngircd: skipped, the binary is not installed (apt-get install ngircd)")
            continue
        ok.append(name)
    return ok, notices
