"""``twistd chat``: option parsing and service building in-process, and the real command line.

The in-process tests parse :class:`chatservice.tap.Options` and build the
service with :func:`chatservice.tap.makeService` on a ``MemoryReactorClock``
(nothing listens for real).  The subprocess tests run ``twistd`` as a user
would, from a temporary working directory, to check that the ``chat`` plugin
is found there, that ``--help`` documents every option, and that a bad option
is reported on the last line of output with a non-zero exit status.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from chatservice import tap
from chatservice.metrics.lag import ReactorLag
from chatservice.metrics.site import QuietSite
from chatservice.reload import ReloadOnSignal
from chatservice.server.factory import ChatFactory
from chatservice.service import ChatService
from tests.certs import make_certificates
from tests.e2e_support import run_twistd

OPTIONS = (
    "--listen",
    "--credentials",
    "--block-duration",
    "--max-failures",
    "--timeout",
    "--data-dir",
    "--history-max-age",
    "--history-max-entries",
    "--history-purge-interval",
)


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    """A valid credentials file."""
    path = tmp_path / "credentials.txt"
    path.write_text("# accounts\nyoda wise\n\nhans falcon\n", encoding="utf-8")
    return path


class MemoryReactor(MemoryReactorClock):
    """A memory reactor (records listens, fake clock) with a thread pool that never starts.

    ``makeService`` asks for the reactor's thread pool (password checks and
    log writes run there); nothing in these tests runs in it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.threadpool = ThreadPool(name="test-tap-unused")

    def getThreadPool(self) -> ThreadPool:
        return self.threadpool


def parse(*arguments: str) -> tap.Options:
    """Parse ``arguments`` as ``twistd chat`` would."""
    config = tap.Options()
    config.parseOptions(list(arguments))
    return config


def usage_error(*arguments: str) -> str:
    """The message of the UsageError that parsing ``arguments`` must raise."""
    with pytest.raises(usage.UsageError) as caught:
        parse(*arguments)
    return str(caught.value)


class TestDefaults:
    """What ``twistd chat`` means with no options."""

    def test_defaults(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)  # no etc/credentials.txt here
        config = parse()
        assert config["listen"] == ["tcp:4119"]
        assert config["block-duration"] == 60.0
        assert isinstance(config["block-duration"], float)
        assert config["max-failures"] == 3
        assert isinstance(config["max-failures"], int)
        assert config["name-failures"] == 10
        assert config["timeout"] == 600.0
        assert isinstance(config["timeout"], float)
        assert config["data-dir"] == Path("chat-data")
        # Without etc/credentials.txt, the bundled sample accounts are used.
        assert config["accounts"].path == tap.BUNDLED_CREDENTIALS
        assert config["accounts"].exists("yoda")

    def test_etc_credentials_preferred(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "credentials.txt").write_text("ada lovelace\n", encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        config = parse()
        assert config["accounts"].usernames() == ["ada"]

    def test_each_default_is_fresh(self, credentials: Path) -> None:
        first = parse("--credentials", str(credentials), "--listen", "tcp:1")
        second = parse("--credentials", str(credentials))
        assert first["listen"] == ["tcp:1"]
        assert second["listen"] == ["tcp:4119"]


class TestValues:
    """Options given on the command line."""

    def test_all_options(self, credentials: Path, tmp_path: Path) -> None:
        config = parse(
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--credentials",
            str(credentials),
            "--block-duration",
            "2.5",
            "--max-failures",
            "5",
            "--timeout",
            "1",
            "--data-dir",
            str(tmp_path / "d"),
        )
        assert config["listen"] == ["tcp:0:interface=127.0.0.1"]
        assert config["accounts"].usernames() == ["hans", "yoda"]
        assert config["block-duration"] == 2.5
        assert config["max-failures"] == 5
        assert config["timeout"] == 1.0
        assert config["data-dir"] == tmp_path / "d"

    def test_short_options(self, credentials: Path) -> None:
        config = parse(
            "-l", "tcp:0", "-c", str(credentials), "-b", "0", "-f", "1", "-t", "30", "-d", "x"
        )
        assert config["listen"] == ["tcp:0"]
        assert config["block-duration"] == 0.0
        assert config["max-failures"] == 1
        assert config["timeout"] == 30.0
        assert config["data-dir"] == Path("x")

    def test_listen_is_repeatable(self, credentials: Path) -> None:
        config = parse(
            "--credentials",
            str(credentials),
            "--listen",
            "tcp:0",
            "-l",
            "tcp:0:interface=127.0.0.1",
            "--listen",
            "unix:/tmp/chat.sock",
        )
        assert config["listen"] == [
            "tcp:0",
            "tcp:0:interface=127.0.0.1",
            "unix:/tmp/chat.sock",
        ]

    def test_operator_is_repeatable_and_reaches_the_state(self, credentials: Path, tmp_path: Path) -> None:
        config = parse(
            "--credentials", str(credentials), "--operator", "yoda", "--operator", "hans",
            "--data-dir", str(tmp_path / "data"),
        )
        assert config["operator"] == ["yoda", "hans"]
        assert parse("--credentials", str(credentials))["operator"] == []
        top = tap.makeService(config, reactor=MemoryReactor())
        assert top.state.moderation.granted == ("yoda", "hans")

    def test_data_dir_user_expanded(
        self, credentials: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        config = parse("--credentials", str(credentials), "--data-dir", "~/chat")
        assert config["data-dir"] == tmp_path / "chat"


class TestErrors:
    """Bad values are refused with a UsageError that names the option or file."""

    @pytest.mark.parametrize(
        "value, message",
        [
            ("0", "--max-failures must be at least 1, not 0"),
            ("6", "--max-failures must be from 1 to 5, not 6"),
            ("x", "--max-failures must be a number, not 'x'"),
            ("-2", "--max-failures must be at least 1, not -2"),
        ],
    )
    def test_max_failures(self, credentials: Path, value: str, message: str) -> None:
        error = usage_error("--credentials", str(credentials), "--max-failures", value)
        assert error == message

    @pytest.mark.parametrize(
        "value, message",
        [
            ("3", "--name-failures must be more than --max-failures (3), not 3"),
            ("1", "--name-failures must be at least 2, not 1"),
            ("x", "--name-failures must be a number, not 'x'"),
        ],
    )
    def test_name_failures(self, credentials: Path, value: str, message: str) -> None:
        error = usage_error("--credentials", str(credentials), "--name-failures", value)
        assert error == message

    def test_name_failures_accepted(self, credentials: Path) -> None:
        config = parse("--credentials", str(credentials), "--max-failures", "2", "--name-failures", "3")
        assert config["name-failures"] == 3

    @pytest.mark.parametrize(
        "value, message",
        [
            ("-1", "--block-duration must be at least 0, not -1"),
            ("nan", "--block-duration must be at least 0, not nan"),
            ("inf", "--block-duration must be at least 0, not inf"),
            ("soon", "--block-duration must be a number, not 'soon'"),
        ],
    )
    def test_block_duration(self, credentials: Path, value: str, message: str) -> None:
        error = usage_error("--credentials", str(credentials), "--block-duration", value)
        assert error == message

    @pytest.mark.parametrize(
        "value, message",
        [
            ("0", "--timeout must be at least 1, not 0"),
            ("0.5", "--timeout must be at least 1, not 0.5"),
            ("", "--timeout must be a number, not ''"),
        ],
    )
    def test_timeout(self, credentials: Path, value: str, message: str) -> None:
        assert usage_error("--credentials", str(credentials), "--timeout", value) == message

    def test_history_bounds(self, credentials: Path) -> None:
        config = parse("--credentials", str(credentials))
        assert (config["history-max-age"], config["history-max-entries"]) == (0, tap.DEFAULT_HISTORY_MAX_ENTRIES)
        config = parse(
            "--credentials", str(credentials), "--history-max-age", "30d",
            "--history-max-entries", "0", "--history-purge-interval", "5",
        )
        assert (config["history-max-age"], config["history-max-entries"]) == (2_592_000, 0)
        assert config["history-purge-interval"] == 5.0

    @pytest.mark.parametrize(
        "option, value, message",
        [
            ("--history-max-age", "1w", "--history-max-age must be seconds, or a number and s, m, h or d (e.g. 30d), not '1w'"),
            ("--history-max-age", "-5", "--history-max-age must be seconds, or a number and s, m, h or d (e.g. 30d), not '-5'"),
            ("--history-max-entries", "-1", "--history-max-entries must be at least 0, not -1"),
            ("--history-max-entries", "many", "--history-max-entries must be a number, not 'many'"),
            ("--history-purge-interval", "0", "--history-purge-interval must be at least 0.01, not 0"),
        ],
    )
    def test_bad_history_bounds(self, credentials: Path, option: str, value: str, message: str) -> None:
        assert usage_error("--credentials", str(credentials), option, value) == message

    @pytest.mark.parametrize("description", ["nonsense:4119", "tcp:port", "tcp"])
    def test_bad_endpoint(self, credentials: Path, description: str) -> None:
        error = usage_error("--credentials", str(credentials), "--listen", description)
        assert error.startswith(f"--listen {description!r} is not a server endpoint: ")

    def test_bad_endpoint_among_good_ones(self, credentials: Path) -> None:
        error = usage_error(
            "--credentials", str(credentials), "--listen", "tcp:0", "--listen", "bogus:1"
        )
        assert error.startswith("--listen 'bogus:1' is not a server endpoint: ")

    def test_bad_metrics_endpoint(self, credentials: Path) -> None:
        error = usage_error("--credentials", str(credentials), "--metrics", "nonsense:9119")
        assert error.startswith("--metrics 'nonsense:9119' is not a server endpoint: ")

    def test_missing_credentials_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.txt"
        error = usage_error("--credentials", str(missing))
        assert error == f"{missing}: cannot read: No such file or directory"

    def test_credentials_directory(self, tmp_path: Path) -> None:
        error = usage_error("--credentials", str(tmp_path))
        assert error.startswith(f"{tmp_path}: cannot read: ")

    @pytest.mark.parametrize(
        "content, problem",
        [
            (b"yoda wise\nhans\n", ":2: expected 'username password'"),
            (b"yoda wise\nyoda other\n", ":2: yoda is listed twice"),
            (b"yoda wise\n" + b"x" * 33 + b" pw\n", ":2: a user name has at most 32 characters"),
            (b"yo\x01da wise\n", ":1: a user name cannot contain spaces or control characters"),
            (b"yoda w\xe9se\n", ": not valid UTF-8"),
        ],
    )
    def test_corrupt_credentials_file(
        self, tmp_path: Path, content: bytes, problem: str
    ) -> None:
        path = tmp_path / "bad.txt"
        path.write_bytes(content)
        assert usage_error("--credentials", str(path)) == f"{path}{problem}"

    def test_unknown_option(self, credentials: Path) -> None:
        error = usage_error("--credentials", str(credentials), "--colour", "blue")
        assert "colour" in error


class TestMakeService:
    """``makeService`` on a memory reactor: the service tree and its listeners."""

    def test_admin_socket_options(self, credentials: Path, tmp_path: Path) -> None:
        common = ["--credentials", str(credentials)]
        config = parse(*common, "--data-dir", str(tmp_path / "data"), "--admin-socket", "none")
        assert (config["admin-socket"], config["admin-socket-problem"]) == (None, None)
        config = parse(*common, "--data-dir", str(tmp_path / "data"), "--admin-socket", "/run/chat.sock")
        assert config["admin-socket"] == Path("/run/chat.sock")
        deep = tmp_path / ("d" * 100)
        # A data directory too deep for the default socket: the server runs without one, saying why.
        config = parse(*common, "--data-dir", str(deep))
        assert config["admin-socket"] is None
        assert "longer than a UNIX socket's 107 bytes" in config["admin-socket-problem"]
        # A path given too long is refused.
        with pytest.raises(usage.UsageError, match="give a shorter --admin-socket PATH"):
            parse(*common, "--data-dir", str(tmp_path), "--admin-socket", str(deep / "a.sock"))

    def test_service_with_listeners(self, credentials: Path, tmp_path: Path) -> None:
        config = parse(
            "--credentials",
            str(credentials),
            "--listen",
            "tcp:4119",
            "--listen",
            "tcp:4120:interface=127.0.0.1",
            "--data-dir",
            str(tmp_path / "data"),
        )
        reactor = MemoryReactor()
        top = tap.makeService(config, reactor=reactor)
        # The chat service, whose children are the listeners (started once it has loaded).
        assert isinstance(top, ChatService)
        assert IService.providedBy(top)
        listeners = [s for s in top if isinstance(s, StreamServerEndpointService)]
        others = [s for s in top if not isinstance(s, StreamServerEndpointService)]
        assert len(listeners) == 2
        # SIGHUP reloads; the admin socket listens in the data directory.
        assert sorted(type(s).__name__ for s in others) == ["AdminSocket", "ReloadOnSignal"]
        admin = next(s for s in others if type(s).__name__ == "AdminSocket")
        assert admin.path == (tmp_path / "data" / "admin.sock").absolute()
        factories = {id(listener.factory) for listener in listeners}
        assert len(factories) == 1  # one factory, so one chat state, for all ports
        assert isinstance(listeners[0].factory, ChatFactory)

        # The listeners listen on the given reactor, as described.
        for listener in listeners:
            listener.startService()
        try:
            assert [(port, interface) for port, _f, _b, interface in reactor.tcpServers] == [
                (4119, ""),
                (4120, "127.0.0.1"),
            ]
            assert all(f is listeners[0].factory for _p, f, _b, _i in reactor.tcpServers)
        finally:
            for listener in listeners:
                listener.stopService()
        # Building the service does not create the data directory; starting it does.
        assert not (tmp_path / "data").exists()

    def test_default_listener(self, credentials: Path) -> None:
        reactor = MemoryReactor()
        top = tap.makeService(parse("--credentials", str(credentials)), reactor=reactor)
        listeners = [s for s in top if isinstance(s, StreamServerEndpointService)]
        assert len(listeners) == 1
        listeners[0].startService()
        try:
            assert [server[0] for server in reactor.tcpServers] == [4119]
        finally:
            listeners[0].stopService()


    def test_metrics_listener_and_reactor_lag(self, credentials: Path) -> None:
        reactor = MemoryReactor()
        config = parse(
            "--credentials", str(credentials), "--metrics", "tcp:9119:interface=127.0.0.1"
        )
        top = tap.makeService(config, reactor=reactor)
        listeners = [s for s in top if isinstance(s, StreamServerEndpointService)]
        assert len(listeners) == 2
        metrics = listeners[1]
        assert isinstance(metrics.factory, QuietSite)
        lags = [s for s in top if isinstance(s, ReactorLag)]
        assert len(lags) == 1 and lags[0].clock is reactor
        metrics.startService()
        lags[0].startService()
        try:
            assert reactor.tcpServers[0][0::3] == (9119, "127.0.0.1")
            assert len(reactor.getDelayedCalls()) == 1  # the lag's timer
        finally:
            metrics.stopService()
            lags[0].stopService()
        assert reactor.getDelayedCalls() == []

    def test_no_metrics_no_lag_timer(self, credentials: Path) -> None:
        top = tap.makeService(parse("--credentials", str(credentials)), reactor=MemoryReactor())
        assert not [s for s in top if isinstance(s, ReactorLag)]


class TestCommandLine:
    """The real ``twistd`` command, run from an empty temporary directory."""

    def test_plugin_found_from_any_directory(self, tmp_path: Path) -> None:
        result = run_twistd(["--help"], cwd=tmp_path)
        assert result.returncode == 0, result.stdout
        commands = result.stdout.split("Commands:", 1)[1]
        assert any(line.split()[:1] == ["chat"] for line in commands.splitlines()), commands

    def test_installed_plugin_found(self, tmp_path: Path) -> None:
        """As after ``pip install .``: without this checkout on the path."""
        try:
            importlib.metadata.distribution("chatservice")
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("chatservice is not installed")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout
        commands = result.stdout.split("Commands:", 1)[1]
        assert any(line.split()[:1] == ["chat"] for line in commands.splitlines()), commands

    def test_help_documents_every_option(self, tmp_path: Path) -> None:
        result = run_twistd(["chat", "--help"], cwd=tmp_path)
        assert result.returncode == 0, result.stdout
        assert result.stdout.startswith("Usage: twistd [options] chat [options]")
        for option in OPTIONS:
            assert f"{option}=" in result.stdout, option
        for short in ("-l", "-c", "-b", "-f", "-t", "-d"):
            assert f"  {short}, --" in result.stdout, short
        # The help is wrapped to the terminal: a default may be split over two lines.
        words = " ".join(result.stdout.split())
        assert "[default: tcp:4119]" in words
        assert "[default: 600]" in words

    def test_bad_max_failures_exits_with_the_problem(self, tmp_path: Path) -> None:
        result = run_twistd(["chat", "--max-failures", "9"], cwd=tmp_path)
        assert result.returncode != 0
        last = result.stdout.strip().splitlines()[-1]
        assert last.endswith("chat: --max-failures must be from 1 to 5, not 9"), last
        assert not (tmp_path / "chat-data").exists()

    def test_missing_credentials_exits_with_the_file(self, tmp_path: Path) -> None:
        result = run_twistd(["chat", "--credentials", "missing.txt"], cwd=tmp_path)
        assert result.returncode != 0
        last = result.stdout.strip().splitlines()[-1]
        assert last.endswith("chat: missing.txt: cannot read: No such file or directory"), last

    def test_bad_database_exits_with_the_problem(self, tmp_path: Path) -> None:
        """The store is checked before the service starts (``postOptions``), as always."""
        (tmp_path / "chat-data").mkdir()
        database = tmp_path / "chat-data" / "chat.sqlite3"
        database.write_bytes(b"not a database at all" * 10)
        result = run_twistd(["-n", "chat"], cwd=tmp_path)
        assert result.returncode != 0
        last = result.stdout.strip().splitlines()[-1]
        assert "is not an SQLite database" in last, last
        assert database.read_bytes() == b"not a database at all" * 10


class TestReloadable:
    """What ``twistd chat`` keeps for a reload: the limits file, the ``ssl:`` listeners' certificates."""

    def test_limits_file_command_line_and_defaults(self, credentials: Path, tmp_path: Path) -> None:
        limits = tmp_path / "limits.conf"
        limits.write_text("max-per-address = 4\nflood-rate = 2.5\n", encoding="utf-8")
        config = parse(
            "--credentials", str(credentials), "--data-dir", str(tmp_path / "data"),
            "--limits", str(limits), "--flood-rate", "1", "--timeout", "30",
        )
        assert config["max-per-address"] == 4  # the file's
        assert config["flood-rate"] == 1.0  # the command line wins...
        assert config["limits-ignored"] == ["flood-rate"]  # ...and that is said
        assert config["timeout"] == 30.0
        assert config["max-connections"] == 1000  # the default
        assert config["limits-from-command-line"] == {"flood-rate", "timeout"}

    def test_bad_limits_file(self, credentials: Path, tmp_path: Path) -> None:
        limits = tmp_path / "limits.conf"
        limits.write_text("max-per-address = none\n", encoding="utf-8")
        message = usage_error("--credentials", str(credentials), "--limits", str(limits))
        assert message == f"{limits}:1: max-per-address must be a number, not 'none'"

    def test_key_not_matching_its_certificate(self, credentials: Path, tmp_path: Path) -> None:
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        first = make_certificates(tmp_path / "first")
        second = make_certificates(tmp_path / "second")
        description = f"ssl:0:privateKey={first['key']}:certKey={second['cert']}"
        message = usage_error("--credentials", str(credentials), "--listen", description)
        assert message.startswith(f"--listen: {description}: ")

    def test_ssl_listeners_have_a_certificate_to_swap(self, credentials: Path, tmp_path: Path) -> None:
        (tmp_path / "certs").mkdir()
        certs = make_certificates(tmp_path / "certs")
        chat = f"ssl:4120:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
        web = f"ssl:8443:privateKey={certs['key']}:certKey={certs['cert']}"
        config = parse(
            "--credentials", str(credentials), "--data-dir", str(tmp_path / "data"),
            "--listen", "tcp:4119", "--listen", chat, "--web", web,
        )
        reactor = MemoryReactor()
        top = tap.makeService(config, reactor=reactor)
        top.privilegedStartService()
        reloader = top.state.rehash.__self__
        assert set(reloader.certificates) == {chat, web}
        listening = {port: (factory, interface) for port, factory, _backlog, interface in reactor.tcpServers}
        assert set(listening) == {4119, 4120, 8443}
        # TLS over TCP, as listenSSL does (the factory's certificate is the reloader's).
        assert isinstance(listening[4120][0], TLSMemoryBIOFactory)
        assert isinstance(listening[8443][0], TLSMemoryBIOFactory)
        assert listening[4120][1] == "127.0.0.1"
        assert isinstance(listening[4119][0], ChatFactory)
