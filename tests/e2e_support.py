"""End-to-end test support: the real ``twistd chat`` server in a subprocess, and a line client.

:class:`ChatServer` runs ``twistd -n chat`` (through ``sys.executable``, so the
same interpreter and installed packages as the tests) in a temporary working
directory, with its own credentials file and data directory, listening on an
ephemeral port on 127.0.0.1.  The port is read from the log line
``ChatFactory starting on PORT``.

The subprocess imports :mod:`chatservice` from wherever the tests imported it
(that directory is put first on ``PYTHONPATH``), so a source checkout is tested
as it is, not as it was when it was last ``pip install``-ed.  The ``chat``
plugin itself is found through ``twisted.plugins`` (the installed
``twisted/plugins/chat.py``, or the checkout's ``twisted/plugins`` directory).

:class:`LineClient` is a small blocking TCP client: every read has a deadline,
so a test that waits for something that never comes fails instead of hanging.

Everything here is bounded in time and uses loopback only.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import chatservice
from tests.support import strip_negotiation

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
"""Seconds to wait for the server to log the port it listens on."""
STOP_TIMEOUT = 10.0
"""Seconds to wait for the server to exit after SIGTERM before killing it."""
READ_TIMEOUT = 5.0
"""Default seconds a client waits for an expected reply."""

_PORT_LINE = re.compile(rb"ChatFactory(?: \(PROXY\))? starting on (\d+)")
_READY_LINE = b"Chat service started"
"""Logged once the store is open and the state loaded: connections are served from then on."""
_WEB_PORT_LINE = re.compile(rb"Site \(InputGuardFactory\) starting on (\d+)")
# The directory the tests import chatservice from (a checkout, or site-packages).
SOURCE_ROOT = Path(chatservice.__file__).resolve().parent.parent

DEFAULT_ACCOUNTS: dict[str, str] = {
    "yoda": "wise",
    "hans": "falcon",
    "luke": "jedi",
    "obiwan": "kenobi",
    "leia": "princess",
}


def stored_account(database: Path, username: str) -> tuple[str, str | None] | None:
    """``(secret, scram)`` of ``username`` in a server's SQLite store, read beside the running server."""
    import sqlite3

    connection = sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True)
    try:
        row = connection.execute(
            "SELECT secret, scram FROM chat_accounts WHERE username = ?", (username,)
        ).fetchone()
    finally:
        connection.close()
    return None if row is None else (row[0], row[1])


def stored_keys(database: Path, username: str) -> str | None:
    """The SCRAM keys (text) a server's SQLite store has for ``username``, or ``None``."""
    account = stored_account(database, username)
    return None if account is None else account[1]


def loopback_source(address: str) -> bool:
    """Whether this host can connect from loopback ``address`` (e.g. ``127.0.0.2``).

    Linux routes all of 127.0.0.0/8 to the loopback interface; other systems
    may only have 127.0.0.1.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


ANY_PORT_LINE = re.compile(rb"ChatFactory (?:\(TLS\) )?starting on (\d+)")


def launch_twistd(
    arguments: Sequence[str], work: Path, ports: int = 1, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Start ``twistd *arguments`` in ``work`` and wait until it listens on ``ports`` ports.

    Its output goes to a new log file in ``work``.

    :raises ServerError: with the log, if it exits or does not listen in time.
    """
    log_path = work / f"twistd-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            twistd_command(*arguments),
            cwd=work,
            env=subprocess_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while True:
        found = [int(port) for port in ANY_PORT_LINE.findall(log_path.read_bytes())]
        if len(found) >= ports:
            return process, found
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise ServerError(log_path.read_text(errors="replace"))
        time.sleep(0.05)


class ServerError(Exception):
    """The server did not start, or did not stop, as it should; the message has its log."""


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop ``process`` if it still runs: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def twistd_command(*arguments: str) -> list[str]:
    """The command line running ``twistd`` with ``arguments`` under this interpreter."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *arguments]


def subprocess_environment() -> dict[str, str]:
    """This process's environment, unbuffered, with :data:`SOURCE_ROOT` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [str(SOURCE_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_twistd(
    arguments: Sequence[str], cwd: Path | str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``twistd *arguments`` to completion (bounded); stdout and stderr are merged."""
    return subprocess.run(
        twistd_command(*arguments),
        cwd=cwd,
        env=subprocess_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


class ChatServer:
    """A real ``twistd chat`` server in a subprocess.

    :param accounts: user name to password, written to a temporary credentials file.
    :param block_duration: ``--block-duration`` in seconds.
    :param max_failures: ``--max-failures``.
    :param timeout: ``--timeout`` (inactivity) in seconds.
    :param web: also serve the browser client (``--web``); :attr:`web_port`
        is then its port.
    :param options: more ``twistd chat`` options.
    :param proxied: listen with ``haproxy:tcp:...``: connections start with a PROXY header.

    Use :meth:`start` and :meth:`stop` (or ``with``), and :meth:`restart`.
    :attr:`port` is the port it listens on (ephemeral, then kept across
    restarts); :meth:`log` is everything it has written so far.
    """

    def __init__(
        self,
        accounts: Mapping[str, str] | None = None,
        block_duration: float = 2,
        max_failures: int = 3,
        timeout: float = 3,
        web: bool = False,
        options: Sequence[str] = (),
        proxied: bool = False,
    ) -> None:
        self.accounts = dict(DEFAULT_ACCOUNTS if accounts is None else accounts)
        self.proxied = proxied
        self.block_duration = block_duration
        self.max_failures = max_failures
        self.timeout = timeout
        self.web = web
        self.options = list(options)
        self.port = 0
        self.web_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._last_log = b""

    @property
    def directory(self) -> Path:
        """The server's temporary working directory."""
        assert self._tempdir is not None, "server not started"
        return Path(self._tempdir.name)

    @property
    def data_dir(self) -> Path:
        """The ``--data-dir`` given to the server."""
        return self.directory / "data"

    def command(self) -> list[str]:
        """The full command line of the server."""
        return twistd_command(
            "-n",
            "--pidfile=",
            "chat",
            "--listen",
            f"{'haproxy:' if self.proxied else ''}tcp:{self.port}:interface={HOST}",
            "--credentials",
            str(self.directory / "credentials.txt"),
            "--block-duration",
            f"{self.block_duration:g}",
            "--max-failures",
            str(self.max_failures),
            "--timeout",
            f"{self.timeout:g}",
            "--data-dir",
            str(self.data_dir),
            *(["--web", f"tcp:{self.web_port}:interface={HOST}"] if self.web else []),
            *self.options,
        )

    def start(self, start_timeout: float = START_TIMEOUT) -> ChatServer:
        """Start the server and wait (at most ``start_timeout`` s) for its port.

        :raises ServerError: with the captured log, if it exits or never logs its port.
        """
        self._tempdir = tempfile.TemporaryDirectory(prefix="chat-e2e-")
        work = self.directory
        (work / "credentials.txt").write_text(
            "".join(f"{user} {password}\n" for user, password in self.accounts.items()),
            encoding="utf-8",
        )
        self._log_path = work / "server.log"
        self.port = self.web_port = 0  # ephemeral; restart() keeps them
        return self._launch(start_timeout)

    def restart(self, start_timeout: float = START_TIMEOUT) -> ChatServer:
        """Stop the server (SIGTERM) and start it again on the same ports, with the same data.

        Its log goes on in the same file.

        :raises ServerError: with the captured log, if it does not listen again.
        """
        assert self._tempdir is not None, "server not started"
        self.terminate()
        return self._launch(start_timeout)

    def _launch(self, start_timeout: float) -> ChatServer:
        """Run :meth:`command`, appending to the log, and wait for the ports it logs."""
        assert self._log_path is not None
        offset = self._log_path.stat().st_size if self._log_path.exists() else 0
        # stdout goes to a file, not a pipe: the server can never block on a full
        # pipe, and the whole log stays readable after it exits.
        with open(self._log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                env=subprocess_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + start_timeout
        while True:
            log = self.log_bytes()[offset:]
            match = _PORT_LINE.search(log)
            web = _WEB_PORT_LINE.search(log)
            if match and (web or not self.web) and _READY_LINE in log:
                self.port = int(match.group(1))
                self.web_port = int(web.group(1)) if web else 0
                return self
            if self.process.poll() is not None:
                log = self.log()
                self._cleanup_files()
                raise ServerError(
                    f"chat server exited with {self.process.returncode} before"
                    f" listening:\n{log}"
                )
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise ServerError(
                    f"chat server did not log its port within {start_timeout:g} s:\n{log}"
                )
            time.sleep(0.02)

    def log_bytes(self) -> bytes:
        """Everything the server has written to stdout and stderr so far."""
        if self._log_path is None or not self._log_path.exists():
            return self._last_log
        return self._log_path.read_bytes()

    def log(self) -> str:
        """:meth:`log_bytes`, decoded leniently."""
        return self.log_bytes().decode("utf-8", "replace")

    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, stop_timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the server with SIGTERM (SIGKILL after ``stop_timeout`` s); return its exit code.

        Idempotent.  The temporary directory is removed.
        """
        code = self.terminate(stop_timeout)
        self._cleanup_files()
        return code

    def terminate(self, stop_timeout: float = STOP_TIMEOUT) -> int | None:
        """End the process (SIGTERM, SIGKILL after ``stop_timeout`` s); return its exit code.

        Its directory, data and ports are kept: :meth:`restart` starts it
        again; :meth:`stop` also removes the directory.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(stop_timeout)
        return process.returncode

    def _cleanup_files(self) -> None:
        if self._tempdir is not None:
            self._last_log = self.log_bytes()
            self._tempdir.cleanup()
            self._tempdir = None
            self._log_path = None

    def connect(self, timeout: float = READ_TIMEOUT, source: str | None = None) -> LineClient:
        """A new :class:`LineClient` connected to this server (from ``source``, if given)."""
        return LineClient(self.port, timeout=timeout, source=source)

    def logged_in(self, username: str, password: str, source: str | None = None) -> LineClient:
        """A text connection logged in as ``username`` (from ``source``, if given; the caller closes it)."""
        client = self.connect(source=source)
        client.login(username, password)
        return client

    def logged_in_json(self, username: str, password: str) -> LineClient:
        """A JSON lines connection logged in as ``username`` (the caller closes it)."""
        client = self.connect()
        client.login_json(username, password)
        return client

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def served_cleanly(chat: ChatServer) -> Iterator[ChatServer]:
    """A pytest fixture's body: yield the started ``chat`` to the tests, then stop it.

    It must have stayed up through the tests, logged no traceback and exited on SIGTERM.
    """
    try:
        yield chat
        alive = chat.running()
        log = chat.log()
    finally:
        code = chat.stop()
    assert alive, f"the server died during the tests:\n{log}"
    assert "Traceback" not in log and "Unhandled" not in log, log
    assert code == -signal.SIGTERM, f"exit code {code} after SIGTERM:\n{chat.log()}"


class LineClient:
    """A blocking TCP client reading CRLF/LF-terminated lines, with deadlines everywhere.

    :param port: the server's port on 127.0.0.1.
    :param timeout: default seconds to wait for anything expected.
    :param source: the local address to connect from, e.g. ``127.0.0.2`` (so
        the server sees another client address); see :func:`loopback_source`.
    :param tls: speak TLS, verifying the server with this context (as
        ``localhost``); the handshake is done when the client is made.
    """

    _sync_ids = itertools.count(1)
    raw = b""
    _tail = b""

    def __init__(
        self,
        port: int,
        timeout: float = READ_TIMEOUT,
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(
            (HOST, port),
            timeout=timeout,
            source_address=None if source is None else (source, 0),
        )
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
            except BaseException:
                self.sock.close()
                raise
        self.buffer = b""
        self.raw = b""
        """Every byte received, telnet negotiation included (:attr:`buffer` has none)."""
        self._tail = b""
        self.eof = False

    # Sending ---------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send ``data`` as it is."""
        self.sock.sendall(data)

    def send(self, line: str | bytes, eol: bytes = b"\r\n") -> None:
        """Send one line (text is UTF-8 encoded), as telnet would: with CRLF."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.sock.sendall(data + eol)

    def send_json(self, obj: Any) -> None:
        """Send one JSON value as a line."""
        self.send(json.dumps(obj), b"\n")

    # Receiving -------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Receive more bytes before ``deadline``; ``False`` on timeout or EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self.buffer += self._tail
            self._tail = b""
            return False
        self.raw += data
        # As nc's user sees it: telnet negotiation is no text (a sequence may
        # arrive split: its start waits for the rest).
        data = self._tail + data
        cut = len(data) - 2 if data[-2:-1] == b"\xff" else len(data) - 1 if data[-1:] == b"\xff" else len(data)
        data, self._tail = data[:cut], data[cut:]
        self.buffer += strip_negotiation(data)
        return True

    def read_until(self, marker: str | bytes, timeout: float | None = None) -> str:
        """Read up to and including ``marker``; return that text (consumed).

        :raises AssertionError: with what was received, on timeout or EOF.
        """
        raw = marker.encode("utf-8") if isinstance(marker, str) else marker
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            index = self.buffer.find(raw)
            if index >= 0:
                end = index + len(raw)
                data, self.buffer = self.buffer[:end], self.buffer[end:]
                return data.decode("utf-8")
            if not self._fill(deadline):
                raise AssertionError(
                    f"{'connection closed' if self.eof else 'timed out'} waiting for"
                    f" {marker!r}; received {self.buffer!r}"
                )

    def read_line(self, timeout: float | None = None) -> str:
        """Read one line; return it without its CRLF or LF.

        :raises AssertionError: on timeout or EOF.
        """
        line = self.read_until(b"\n", timeout)
        return line[:-2] if line.endswith("\r\n") else line[:-1]

    def read_lines(self, count: int, timeout: float | None = None) -> list[str]:
        """Read exactly ``count`` lines."""
        return [self.read_line(timeout) for _ in range(count)]

    def read_json(self, timeout: float | None = None) -> dict[str, Any]:
        """Read one line and parse it as a JSON object."""
        line = self.read_line(timeout)
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(obj, dict), f"not a JSON object: {line!r}"
        return obj

    def read_json_until(
        self, predicate: Any, timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Read JSON objects until ``predicate(obj)`` is true: ``(objects before, that object)``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before: list[dict[str, Any]] = []
        while True:
            obj = self.read_json(max(0.0, deadline - time.monotonic()))
            if predicate(obj):
                return before, obj
            before.append(obj)

    def sync(self, timeout: float | None = None) -> list[str]:
        """Return every text line the server sent before this call's round trip.

        For a logged-in text connection only.  Sends a message to a user name
        that does not exist (``sync.N``, unique) and reads up to the error
        that names it, so the lines returned are exactly those the server
        wrote before it read this request.  Being a command, it counts as
        activity for the inactivity timeout.
        """
        marker = f"sync.{next(self._sync_ids)}"
        self.send(f"message {marker} -")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: list[str] = []
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line == f"Error. Invalid user {marker}.":
                return lines
            lines.append(line)

    def sync_json(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """JSON form of :meth:`sync`: the objects received before the round trip.

        The request is an unknown command with a unique ``id`` (so it does
        not count as activity).
        """
        marker = f"sync-{next(self._sync_ids)}"
        self.send_json({"type": "no-such-command", "id": marker})
        before, reply = self.read_json_until(lambda obj: obj.get("id") == marker, timeout)
        assert reply == {
            "type": "error",
            "code": "invalid_command",
            "message": INVALID_COMMAND,
            "id": marker,
        }, reply
        return before

    def wait_closed(self, timeout: float | None = None) -> bytes:
        """Wait for the server to close the connection; return what arrived unread.

        :raises AssertionError: if it is still open at the deadline.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                raise AssertionError(
                    f"connection still open after the deadline; received {self.buffer!r}"
                )
        rest, self.buffer = self.buffer, b""
        return rest

    # Conversations -----------------------------------------------------------------

    def greeted(self) -> None:
        """Read the greeting and the user name prompt exactly."""
        assert self.read_line() == GREETING
        assert self.read_until(USERNAME_PROMPT) == USERNAME_PROMPT

    def login(self, username: str, password: str) -> None:
        """Log in over text from a fresh connection, checking every reply exactly.

        Presence and offline messages that follow the welcome line are left unread.
        """
        self.greeted()
        self.send(username)
        assert self.read_until(PASSWORD_PROMPT) == PASSWORD_PROMPT
        self.send(password)
        line = self.read_line()
        assert line == welcome(username), line

    def login_json(self, username: str, password: str, request_id: Any = None) -> None:
        """Switch a fresh connection to JSON and log in, checking the replies exactly."""
        self.greeted()
        request: dict[str, Any] = {"type": "login", "user": username, "password": password}
        expected: dict[str, Any] = {
            "type": "login",
            "success": True,
            "user": username,
            "guest": False,
        }
        if request_id is not None:
            request["id"] = expected["id"] = request_id
        self.send_json(request)
        # The server ends the text prompt's line when it switches to JSON.
        assert self.read_line() == ""
        obj = self.read_json()
        assert obj == expected, obj

    # Closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()

    def abort(self) -> None:
        """Close abruptly: a TCP reset instead of an orderly shutdown."""
        try:
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Exact server sentences (kept here so a change of wording fails loudly in one place).
GREETING = (
    f"Welcome to chatservice {chatservice.__version__}. Please log in"
    " (programs: send a JSON object to use the JSON interface)."
)
USERNAME_PROMPT = "Username: "
PASSWORD_PROMPT = "Password: "
INVALID_COMMAND = "Error. Invalid command (type help for the list)"
WRONG_PASSWORD = "Invalid Password. Please try again"
JUST_LOCKED = (
    "Invalid Password. Your account has been blocked after too many failures."
    " Please try again later"
)
LOCKED = "Your account is blocked due to multiple login failures. Please try again later"
ADDRESS_LOCKED = (
    "Your address is blocked due to multiple login failures. Please try again later"
)


def with_time_left(refusal: str) -> re.Pattern[str]:
    """A lock-out refusal as text shows it: ``later`` becomes the time left (``in 2 seconds.``)."""
    return re.compile(re.escape(refusal.removesuffix("later")) + r"in \d+ (second|minute)s?\.")


def assert_refused(line: str, refusal: str) -> None:
    """``line`` is ``refusal`` (:data:`LOCKED` ...) with the time left in it."""
    assert with_time_left(refusal).fullmatch(line), line


def welcome(username: str) -> str:
    """The line a user is greeted with after logging in over text."""
    return f"Welcome to chatservice, {username}! Type help for the list of commands."


def unknown_user(username: str) -> str:
    """The reply to an unknown user name."""
    return f"Error. Unknown user {username}. Please try again."
