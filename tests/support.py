"""Test helpers: a whole chat server on a fake clock, and connections to it over StringTransport."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatservice.auth.credentials import CredentialsFile, run_here
from chatservice.auth.directory import Account, StoredAccounts
from chatservice.auth.scram import ScramKeys
from chatservice.auth.slowdown import DEFAULT_NAME_FAILURES
from chatservice.build import LIMITS, build_chat
from chatservice.interfaces import NoActivityRecorder
from chatservice.server.connection import ChatConnection
from chatservice.server.output import OutputBatcher
from chatservice.server.policy import BanList, ConnectionPolicy
from chatservice.server.protocol import ChatProtocol
from chatservice.store.interface import IChatStore
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore

SAMPLE_ACCOUNTS = {
    "yoda": "wise",
    "hans": "falcon",
    "luke": "jedi",
    "obiwan": "kenobi",
    "leia": "princess",
}


def memory_accounts(accounts: Mapping[str, str], clock: Clock | None = None) -> StoredAccounts:
    """Loaded :class:`StoredAccounts` over a new :class:`MemoryStore` with ``accounts`` (name to secret, no keys).

    The store is ``result.store.local``; its calls answer at once.
    """
    store = MemoryStore()
    for username, secret in accounts.items():
        store.add_account(username, secret, None)
    directory = StoredAccounts(LocalStore(store), Clock() if clock is None else clock)
    directory.load()
    return directory


def stored_account(store: MemoryStore, username: str) -> Account | None:
    """The account ``username`` as ``store`` has it (its keys parsed), or ``None``."""
    row = store.account(username)
    if row is None:
        return None
    return Account(row[0], None if row[1] is None else ScramKeys.parse(row[1]))


_NEGOTIATION = re.compile(rb"\xff[\xfb-\xfe].")


def strip_negotiation(data: bytes) -> bytes:
    """``data`` without the telnet ``IAC WILL/WONT/DO/DONT option`` sequences the server sends."""
    return _NEGOTIATION.sub(b"", data)


class Connection:
    """One client connection: a :class:`ChatProtocol` writing into a StringTransport."""

    def __init__(
        self, protocol: ChatProtocol, transport: StringTransport, batcher: OutputBatcher | None = None
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.batcher = batcher
        self.sent_lines: list[bytes] = []
        """Every line this client sent."""

    def send(self, line: str | bytes, eol: bytes = b"\r\n") -> None:
        """Send one line (text is UTF-8 encoded) with ``eol`` appended."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.sent_lines.append(data + eol)
        self.protocol.dataReceived(data + eol)

    def send_json(self, obj: dict[str, Any]) -> None:
        """Send one JSON object as a line."""
        self.send(json.dumps(obj), b"\n")

    def raw_output(self) -> bytes:
        """Every byte written since the last call, telnet negotiation included."""
        if self.batcher is not None:
            self.batcher.flush_now()
        data = self.transport.value()
        self.transport.clear()
        return data

    def output(self) -> str:
        """Everything written since the last call, decoded, as a terminal shows it.

        Telnet negotiation (``IAC WILL ECHO`` at a password prompt) is left
        out, as ``telnet`` takes it and ``nc`` shows it as nothing readable;
        :meth:`raw_output` keeps it.
        """
        return strip_negotiation(self.raw_output()).decode("utf-8")

    def lines(self) -> list[str]:
        """The CRLF-terminated lines written since the last call (a trailing prompt is dropped)."""
        return self.output().split("\r\n")[:-1]

    def json(self) -> list[dict[str, Any]]:
        """The JSON objects written since the last call (non-JSON lines skipped)."""
        return [
            json.loads(line)
            for line in self.output().splitlines()
            if line.startswith("{")
        ]

    @property
    def connection(self) -> ChatConnection:
        """The server side of this connection (what the chat state sees)."""
        assert self.protocol.connection is not None
        return self.protocol.connection

    @property
    def closed(self) -> bool:
        """Whether the server asked to close this connection."""
        return self.transport.disconnecting

    def drop(self) -> None:
        """Simulate the client vanishing."""
        self.protocol.connectionLost(None)

    def login(self, username: str, password: str | None = None) -> None:
        """Log in over the text format and discard the output."""
        self.send(username)
        self.send(password if password is not None else SAMPLE_ACCOUNTS[username])
        self.output()

    def login_json(self, username: str, password: str | None = None) -> None:
        """Log in over the JSON format and discard the output."""
        self.send_json(
            {
                "type": "login",
                "user": username,
                "password": password if password is not None else SAMPLE_ACCOUNTS[username],
            }
        )
        self.output()


class ChatHarness:
    """A chat server built by :func:`~chatservice.build.build_chat`, as ``twistd chat`` builds it, on a :class:`Clock`.

    Password hashing runs at once (no threads), the accounts and data are
    kept in memory (the accounts imported from :attr:`credentials_path`) and
    no activity log is written.

    :param accounts: user name to password.
    :param store: a store to share (another harness's ``state.store``: two
        nodes on one database); by default a new memory store.
    :param name_failures: ``--name-failures``.
    """

    def __init__(
        self,
        accounts: dict[str, str] | None = None,
        max_failures: int = 3,
        block_duration: float = 60,
        name_failures: int = DEFAULT_NAME_FAILURES,
        timeout: float = 600,
        max_line_length: int = 8192,
        batched: bool = False,
        store: IChatStore | None = None,
        **policy: Any,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.directory = Path(tempfile.mkdtemp(prefix="chat-test-"))
        self.credentials_path = self.directory / "credentials.txt"
        self.credentials_path.write_text(
            "".join(f"{u} {p}\n" for u, p in (accounts or SAMPLE_ACCOUNTS).items()),
            encoding="utf-8",
        )
        self.credentials = CredentialsFile.load(self.credentials_path)
        """The credentials file, imported into the store when the harness starts."""
        policy.setdefault("greeting_delay", 0)  # greet at once, as the tests expect
        defaults = ConnectionPolicy()
        config = {
            "accounts": self.credentials,
            "data-dir": self.directory,
            "store": "memory",
            "max-offline": 100,
            "max-failures": max_failures,
            "name-failures": name_failures,
            "block-duration": block_duration,
            "timeout": timeout,
            "bans": policy.pop("bans", BanList()),
            "allow-register": policy.pop("allow_register", False),
            "allow-guests": policy.pop("allow_guests", False),
            **{
                option: policy.pop(field, getattr(defaults, field))
                for option, field, _kind, _minimum, _text in LIMITS
            },
            "max-line-length": max_line_length,
        }
        if policy:
            raise TypeError(f"ChatHarness has no options {sorted(policy)}")
        chat = build_chat(
            config, self.clock, run_in_thread=run_here, activity=NoActivityRecorder(), store=store
        )
        self.chat = chat
        self.state = chat.state
        self.store = chat.state.store.local
        """The :class:`MemoryStore` itself (``state.store`` is its :class:`LocalStore`)."""
        self.accounts = chat.accounts
        """The accounts (in the memory store; ``store.account(name)`` reads one)."""
        self.manager = chat.manager
        self.lockout = chat.lockout
        self.address_lockout = chat.address_lockout
        self.slowdown = chat.slowdown
        self.gate = chat.gate
        self.policy = chat.policy
        self.factory = chat.factory
        # The service is not started: load the state (the memory store
        # answers at once, so the accounts are imported when this returns)
        # and take connections, as a started service does.
        self.state.load()
        self.factory.registry.ready = True
        self.batched = batched
        """Whether connections write through the factory's OutputBatcher, as on
        real TCP (their output is flushed whenever a test reads it)."""
        self._hosts = 0

    def account(self, username: str) -> Account | None:
        """The account ``username`` as the store has it, or ``None``."""
        return stored_account(self.store, username)

    def connect(self, host: str | None = None, port: int = 40000) -> Connection:
        """Open a connection from ``host``; the greeting and prompt are discarded.

        Each connection comes from its own address unless ``host`` is given,
        so per-address lock-outs only apply where a test asks for them.
        """
        if host is None:
            self._hosts += 1
            host = f"10.0.{self._hosts // 250}.{self._hosts % 250 + 1}"
        address = IPv4Address("TCP", host, port)
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        batcher = None
        if self.batched:
            # What connectionMade does for a real TCP transport.
            batcher = self.factory.output_batcher
            if protocol.connection is not None:
                protocol.connection.writer.use_batcher(batcher)
            batcher.flush_now()
        transport.clear()
        return Connection(protocol, transport, batcher)

    def run_due(self) -> None:
        """Run the reactor turns already due (zero-delay calls, and those they schedule).

        What the server does once a turn's output is written: a fetch of kept
        direct messages has the store forget them then, and answers (``idle``,
        ``available``) only after that.
        """
        self.clock.advance(0)

    def online(self, *usernames: str) -> list[Connection]:
        """Connect and log in each of ``usernames`` over text."""
        connections = []
        for username in usernames:
            connection = self.connect()
            connection.login(username)
            connections.append(connection)
        for connection in connections:
            connection.output()
        return connections

    def close_all(self, *connections: Connection) -> None:
        """Drop every connection (as the reactor would) and stop the lock-out timers."""
        for connection in connections:
            connection.drop()
        self.factory.output_batcher.flush_now()
        self.lockout.stop()
        self.address_lockout.stop()
        self.slowdown.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
