"""A throw-away PostgreSQL cluster for the tests, started once per test run.

:func:`cluster` starts it the first time it is called: ``initdb`` into a
temporary directory, then ``pg_ctl start`` listening on 127.0.0.1 only, on a
free port, with its Unix socket in the same directory and ``fsync`` off (the
data is thrown away).  ``initdb`` refuses to run as root, and CI runs as root,
so the cluster's files and processes belong to an unprivileged system user:
:data:`CLUSTER_USER` (created with ``useradd --system`` when missing), or
``nobody`` when that cannot be done.  The cluster is stopped (``pg_ctl stop
-m fast``) and its directory removed when the test process exits, whether the
tests passed or not.

TCP connections need the superuser's password (``scram-sha-256``), so every
DSN the tests use carries a password, and the tests can check that it never
shows.  :func:`new_database` makes an empty database for one test and drops
it after.

The PostgreSQL programs are looked for in ``$CHAT_PG_BIN``, then
``/usr/lib/postgresql/<version>/bin`` (the newest), then ``$PATH``.  When they
are missing the tests that need them **fail** (``.ci/run`` installs them);
set ``CHAT_ALLOW_SKIP_PG=1`` outside CI to skip those tests instead.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.trial import unittest

__all__ = ["CLUSTER_USER", "PASSWORD", "Cluster", "cluster", "new_database"]

CLUSTER_USER = "chatpg"
"""The system user that owns the test cluster when the tests run as root."""

PASSWORD = "pg-secret-Zq7w"
"""The superuser's password (distinctive, so a test can look for it in any text)."""

SUPERUSER = "postgres"
START_TIMEOUT = 30
"""Seconds ``pg_ctl`` may wait for the server to accept connections (and to stop)."""

_numbers = itertools.count(1)


@dataclass
class Cluster:
    """A running test cluster.

    :param port: its TCP port on 127.0.0.1.
    :param directory: the temporary directory with its data, socket and log.
    :param bin_dir: where its programs are.
    :param user: the system user it runs as (``None``: the current user).
    """

    port: int
    directory: Path
    bin_dir: Path
    user: str | None
    _admin: Any = None

    def dsn(self, dbname: str = "postgres", password: str | None = PASSWORD) -> str:
        """A ``postgresql://`` URL for ``dbname`` as the superuser."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside a transaction (one connection kept)."""
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10)
        self._admin.execute(sql)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self._admin is not None:
            self._admin.close()
        try:
            _run(
                self,
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"),
                 "-m", "fast", "-w", "-t", str(START_TIMEOUT), "stop"],
                check=False,
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


_cluster: Cluster | None = None
_failure: BaseException | None = None


def cluster() -> Cluster:
    """The test cluster, started on the first call; later calls return the same one.

    :raises unittest.SkipTest: when PostgreSQL is not installed and
        ``CHAT_ALLOW_SKIP_PG=1`` is set outside CI.
    :raises RuntimeError: when PostgreSQL is not installed otherwise, or the
        cluster cannot be started (the same error for every later call).
    """
    global _cluster, _failure
    if _cluster is not None:
        return _cluster
    if _failure is not None:
        raise _failure
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = (
            "PostgreSQL's initdb and pg_ctl were not found (in $CHAT_PG_BIN,"
            " /usr/lib/postgresql/*/bin or $PATH): install the Debian package"
            " postgresql (.ci/run does)"
        )
        if os.environ.get("CHAT_ALLOW_SKIP_PG") == "1" and not os.environ.get("CI"):
            raise unittest.SkipTest(reason)
        _failure = RuntimeError(reason + ", or set CHAT_ALLOW_SKIP_PG=1 to skip these tests.")
        raise _failure
    try:
        _cluster = _start(bin_dir)
    except BaseException as e:
        _failure = e
        raise
    atexit.register(_cluster.stop)
    return _cluster


def new_database(case: unittest.TestCase) -> str:
    """A DSN (with password) of a new, empty database, dropped after the test ``case``."""
    server = cluster()
    name = f"chat_test_{os.getpid()}_{next(_numbers)}"
    server.admin(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
    case.addCleanup(server.admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return server.dsn(name)


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or ``None``."""
    candidates = []
    if os.environ.get("CHAT_PG_BIN"):
        candidates.append(Path(os.environ["CHAT_PG_BIN"]))
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _cluster_user() -> str | None:
    """The user to run the cluster as: ``None`` unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(CLUSTER_USER)
        return CLUSTER_USER
    except KeyError:
        pass
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", CLUSTER_USER],
        capture_output=True,
        timeout=30,
    )
    if created.returncode == 0 or _user_exists(CLUSTER_USER):
        return CLUSTER_USER
    return "nobody"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _run(server: Cluster, command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the cluster's user, in its directory."""
    options: dict[str, Any] = {}
    if server.user is not None:
        entry = pwd.getpwnam(server.user)
        options = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(server.directory),
    }
    result = subprocess.run(
        command,
        cwd=server.directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 15,
        **options,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(bin_dir: Path) -> Cluster:
    """``initdb`` a new cluster and start it on a free port (a few tries if taken meanwhile)."""
    user = _cluster_user()
    # Under /tmp when it runs as another user, who must reach the directory
    # ($TMPDIR may be private to root).
    directory = Path(tempfile.mkdtemp(prefix="chat-pg-", dir=None if user is None else "/tmp"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    server = Cluster(port=0, directory=directory, bin_dir=bin_dir, user=user)
    try:
        password_file = directory / "password"
        password_file.write_text(PASSWORD + "\n")
        if user is not None:
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        _run(server, [
            str(bin_dir / "initdb"), "-D", str(directory / "data"), "-U", SUPERUSER,
            f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ])
        password_file.unlink()
        log = directory / "server.log"
        started = time.monotonic()
        for attempt in range(3):
            server.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {server.port} -k {directory}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            result = _run(server, [
                str(bin_dir / "pg_ctl"), "-D", str(directory / "data"), "-l", str(log),
                "-w", "-t", str(START_TIMEOUT), "-o", options, "start",
            ], check=False)
            if result.returncode == 0:
                return server
            if time.monotonic() - started > START_TIMEOUT:
                break
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(
            f"The test PostgreSQL cluster did not start (pg_ctl exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}\n{tail}"
        )
    except BaseException:
        server.stop()
        raise
