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
- ``ngircd``: ``ngircd -n -f <generated ngircd.conf>``: the installed one, else
  the one :mod:`bench.fetch_peers` unpacks.
- ``inspircd``: InspIRCd 3, ``inspircd --nofork --config <generated>``.
- ``hybrid``: ircd-hybrid 8, ``ircd-hybrid -foreground -configfile <generated>``
  (as ``nobody`` when we are root: it refuses to run as root).

The last three are unpacked from Debian's packages by :mod:`bench.fetch_peers`
(side by side: the packages conflict); each is skipped with a notice when it
cannot be fetched.
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

from bench import dns_stub, fetch_peers
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
    join_after_welcome: bool = False
    login_concurrency: int | None = None
    """Logins in flight at once, when not the harness's default (InspIRCd: see :func:`start_inspircd`)."""
    """The IRC client sends ``JOIN`` only once ``001`` came (InspIRCd ignores one sent before)."""
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
    """The installed ngIRCd, else the one :mod:`bench.fetch_peers` unpacked (if it did)."""
    installed = shutil.which("ngircd") or (
        "/usr/sbin/ngircd" if os.access("/usr/sbin/ngircd", os.X_OK) else None
    )
    if installed:
        return installed
    unpacked = fetch_peers.unpacked("ngircd")
    return str(unpacked.binary) if unpacked else None


def _peer_env(binary: str) -> dict[str, str]:
    """The environment to run ``binary`` in: with its unpacked libraries when it is an unpacked peer."""
    for name in fetch_peers.PACKAGES:
        unpacked = fetch_peers.unpacked(name)
        if unpacked is not None and Path(binary) == unpacked.binary:
            return unpacked.env()
    return dict(os.environ)


def ngircd_version() -> str | None:
    binary = ngircd_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                             env=_peer_env(binary)).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def peer_versions() -> dict[str, str]:
    """The version of every peer IRC server found here (installed or unpacked)."""
    versions = {"ngircd": ngircd_version() or "not installed"}
    for name in ("inspircd", "ircd-hybrid"):
        unpacked = fetch_peers.unpacked(name)
        versions[name] = f"{name} {unpacked.versions.get(name, '?')} (Debian)" if unpacked else "not fetched"
    return versions


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
    process, log_path = _start_process([binary, "-n", "-f", str(conf)], cpu, work, _peer_env(binary), port)
    stop = _stopper(process, workdir)

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


INSPIRCD_CONNECT = {
    "allow": "*",
    "maxchans": "100",
    "timeout": "3600",
    "pingfreq": "3600",
    "softsendq": "1073741824",
    "hardsendq": "1073741824",
    "recvq": "1048576",
    "threshold": "1000000",
    "commandrate": "100000000",
    "fakelag": "off",
    "localmax": "1000000",
    "globalmax": "1000000",
    "limit": "1000000",
    "useident": "no",
    "resolvehostnames": "no",
    "maxconnwarn": "no",
}
"""InspIRCd's ``<connect>`` class: no per-IP or class limits, sendq 1 GiB, no flood penalty.

InspIRCd stops reading a client whose command penalty passes ``threshold`` (x 1000), and
takes ``commandrate`` / 1000 off it per second: both raised so that it never throttles."""

INSPIRCD_LOGINS_IN_FLIGHT = 500
"""InspIRCd 3 completes a registration only in its once-a-second background check
(``UserManager::DoBackgroundUserStuff``), so every login takes up to a second whatever the
load: with the harness's 8 logins in flight it would measure 8 logins/s.  Its listen backlog
is raised to twice this (``<performance somaxconn>``)."""

INSPIRCD_CONF = """\
<path configdir="{work}" datadir="{work}" logdir="{work}" runtimedir="{work}" moduledir="{modules}">
<server name="bench.inspircd.local" description="chatservice benchmark peer" network="bench">
<admin name="bench" nick="bench" email="root@localhost">
<bind address="{host}" port="{port}" type="clients">
<dns timeout="1">
<connect name="bench" {connect}>
<performance netbuffersize="65534" somaxconn="128" clonesonconnect="no" timeskipwarn="0">
<options defaultmodes="nt">
<limits maxnick="30" maxchan="64">
<pid file="{work}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{work}/inspircd.log">
"""


def _unpacked(name: str) -> fetch_peers.Unpacked:
    unpacked = fetch_peers.unpacked(name)
    if unpacked is None:
        raise FileNotFoundError(f"{name} is not unpacked (python3 -m bench.fetch_peers {name})")
    return unpacked


def _stopper(process: subprocess.Popen[bytes], workdir: tempfile.TemporaryDirectory[str],
             *also: Callable[[], None]) -> Callable[[], None]:
    """A peer's ``stop``: the process (SIGTERM, then SIGKILL), then ``also``, then its directory."""

    def stop() -> None:
        _stop_process(process)
        for then in also:
            then()
        workdir.cleanup()

    return stop


def _start_process(command: list[str], cpu: int | None, work: Path, env: dict[str, str], port: int,
                   user: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """``command`` pinned to ``cpu`` (as ``user`` if given), its output in ``work/server.log``, once it listens."""
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user if user != 'nobody' else 'nogroup'}",
                   "--clear-groups", *command]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    log_path = work / "server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=work, stdin=subprocess.DEVNULL, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    _wait_for_port(process, port, 30, log_path)
    return process, log_path


def start_inspircd(names: list[str], cpu: int | None) -> Peer:
    """InspIRCd 3 as unpacked by :mod:`bench.fetch_peers`, with a generated configuration."""
    unpacked = _unpacked("inspircd")
    workdir = tempfile.TemporaryDirectory(prefix="inspircd-bench-")
    work = Path(workdir.name)
    port = _free_port()
    conf = work / "inspircd.conf"
    conf.write_text(INSPIRCD_CONF.format(
        work=work, modules=unpacked.root / "usr/lib/inspircd/modules", host=HOST, port=port,
        backlog=2 * INSPIRCD_LOGINS_IN_FLIGHT,
        connect=" ".join(f'{k}="{v}"' for k, v in INSPIRCD_CONNECT.items()),
    ), encoding="utf-8")
    command = [str(unpacked.binary), "--config", str(conf), "--nofork", "--nopid"]
    if os.getuid() == 0:
        command.append("--runasroot")
    process, log_path = _start_process(command, cpu, work, unpacked.env(), port)
    stop = _stopper(process, workdir)

    raised = dict(INSPIRCD_CONNECT)
    raised["DNS/ident"] = "off (resolvehostnames, useident)"
    return Peer(
        name="inspircd", protocol="irc", port=port, pid=process.pid,
        version=f"InspIRCd {unpacked.versions.get('inspircd', '?')} (Debian package, unpacked)",
        raised=raised, stop=stop, log_path=log_path, join_after_welcome=True,
        login_concurrency=INSPIRCD_LOGINS_IN_FLIGHT,
        notes=["JOIN is sent once 001 arrives: InspIRCd answers a JOIN sent before registration completes with 451",
               f"{INSPIRCD_LOGINS_IN_FLIGHT} logins in flight (not 8): InspIRCd completes a registration in its"
               " once-a-second background check, so each login takes up to 1 s"],
    )


HYBRID_CLASS = {
    "ping_time": "3600 seconds",
    "number_per_ip_local": "100000",
    "number_per_ip_global": "100000",
    "max_number": "100000",
    "cidr_bitlen_ipv4": "32",
    "number_per_cidr": "100000",
    "sendq": "1024 megabytes",
    "recvq": "8000 bytes",
    "max_channels": "100",
}
"""ircd-hybrid's ``class``: no per-IP, CIDR or class limits, sendq 1 GiB."""
HYBRID_GENERAL = {
    "disable_auth": "yes",
    "throttle_count": "0",
    "throttle_time": "0",
    "default_floodcount": "0",
    "anti_nick_flood": "no",
    "anti_spam_exit_message_time": "0",
    "pace_wait": "0",
    "pace_wait_simple": "0",
    "short_motd": "yes",
}
"""ircd-hybrid's ``general``: ident off, connection throttle and message flood control off."""

HYBRID_CONF = """\
serverinfo {{
  name = "bench.hybrid.local";
  description = "chatservice benchmark peer";
  network_name = "bench";
  network_description = "bench";
  hub = no;
  default_max_clients = 100000;
  max_nick_length = 30;
}};
admin {{ name = "bench"; description = "bench"; email = "<root@localhost>"; }};
class {{
  name = "users";
{klass}
}};
listen {{ host = "{host}"; port = {port}; }};
auth {{ user = "*@*"; class = "users"; flags = exceed_limit, can_flood; }};
general {{
{general}
}};
channel {{ max_channels = 100; default_join_flood_count = 0; }};
modules {{ path = "modules"; path = "modules/autoload"; }};
log {{ use_logging = no; }};
"""


def start_hybrid(names: list[str], cpu: int | None) -> Peer:
    """ircd-hybrid 8 as unpacked (and its module paths made relative) by :mod:`bench.fetch_peers`.

    It runs in a fresh directory holding its configuration, its ban databases
    and a link ``modules`` to the unpacked modules; as ``nobody`` when we are
    root, since it refuses to run as root.
    """
    unpacked = _unpacked("ircd-hybrid")
    workdir = tempfile.TemporaryDirectory(prefix="hybrid-bench-")
    work = Path(workdir.name)
    port = _free_port()
    (work / "modules").symlink_to(unpacked.root / "usr/lib/ircd-hybrid/modules")
    conf = work / "ircd.conf"
    conf.write_text(HYBRID_CONF.format(
        host=HOST, port=port,
        klass="\n".join(f"  {k} = {v};" for k, v in HYBRID_CLASS.items()),
        general="\n".join(f"  {k} = {v};" for k, v in HYBRID_GENERAL.items()),
    ), encoding="utf-8")
    command = [str(unpacked.binary), "-foreground", "-configfile", str(conf), "-pidfile", str(work / "pid"),
               "-logfile", str(work / "ircd.log")]
    for option in ("klinefile", "dlinefile", "xlinefile", "resvfile"):
        command += [f"-{option}", str(work / f"{option}.db")]
    dns = dns_stub.start_on_loopback()
    if dns is not None:
        (work / "resolv.conf").write_text(f"nameserver {dns.address}\n", encoding="ascii")
    else:
        shutil.copy("/etc/resolv.conf", work / "resolv.conf")
    user = None
    if os.getuid() == 0:
        user = "nobody"
        work.chmod(0o755)
        os.chown(work, 65534, 65534)
    try:
        process, log_path = _start_process(command, cpu, work, unpacked.env(), port, user=user)
    except Exception:
        if dns is not None:
            dns.stop()
        raise

    stop = _stopper(process, workdir, *([dns.stop] if dns is not None else []))

    raised = {**HYBRID_CLASS, **HYBRID_GENERAL, "auth flags": "exceed_limit, can_flood",
              "default_join_flood_count": "0", "DNS": "NXDOMAIN at once (bench.dns_stub)" if dns else "machine's"}
    return Peer(
        name="ircd-hybrid", protocol="irc", port=port, pid=process.pid,
        version=f"ircd-hybrid {unpacked.versions.get('ircd-hybrid', '?')} (Debian package, unpacked;"
                " module paths made relative)",
        raised=raised, stop=stop, log_path=log_path,
        notes=[f"runs as {user or 'this user'}; no passwords: IRC registration is NICK/USER",
               "address lookups answered NXDOMAIN at once by bench.dns_stub" if dns is not None else
               "address lookups go to the machine's resolver (no right to bind port 53 for bench.dns_stub)"],
    )


STARTERS: Mapping[str, Callable[[list[str], int | None], Peer]] = {
    "chatservice": start_chat,
    "words": start_words,
    "ngircd": start_ngircd,
    "inspircd": start_inspircd,
    "hybrid": start_hybrid,
}
SERVER_LABELS = {
    "chatservice": "chatservice", "words": "twistd words", "ngircd": "ngircd",
    "inspircd": "inspircd", "hybrid": "ircd-hybrid",
}
SERVERS = list(STARTERS)
"""Every server :mod:`bench.run` knows, in the order it runs them."""
PACKAGE_OF = {"ngircd": "ngircd", "inspircd": "inspircd", "hybrid": "ircd-hybrid"}
"""The peers unpacked from Debian's packages (:mod:`bench.fetch_peers`): server -> package."""


def available_servers(wanted: list[str]) -> tuple[list[str], list[str]]:
    """The servers of ``wanted`` that can run here (fetching the peers not yet unpacked), and notices for the others."""
    ok, notices = [], []
    for name in wanted:
        if name == "ngircd" and ngircd_binary() is not None:
            ok.append(name)
            continue
        if name in PACKAGE_OF:
            unpacked, why = fetch_peers.ensure(PACKAGE_OF[name])
            if unpacked is None:
                notices.append(f"{name}: skipped, {why}")
                continue
        ok.append(name)
    return ok, notices
