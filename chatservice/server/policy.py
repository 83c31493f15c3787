"""What a server allows its connections: timeouts, sizes, banned addresses, sign-up.

:class:`ConnectionPolicy` gathers the settings every connection reads, so the
factory and the protocol take one object instead of a growing list of values.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BanList:
    """Addresses and networks (CIDR) that may not connect.

    :param entries: addresses or networks, e.g. ``203.0.113.7`` or ``10.0.0.0/8``.
    :raises ValueError: for an entry that is neither.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        )

    @classmethod
    def read(cls, path: Path) -> list[str]:
        """The entries of a ban file: one a line, ``#`` comments and blank lines ignored."""
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entries.append(line)
        return entries

    def __bool__(self) -> bool:
        return bool(self.networks)

    def banned(self, host: str) -> bool:
        """Whether ``host`` (an IP address string) is banned."""
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class ConnectionPolicy:
    """Settings every connection reads.

    :param timeout: seconds without a valid command before a user is logged out
        (and before an unauthenticated connection is closed).
    :param max_line_length: longest accepted line, in bytes.
    :param bans: addresses refused before login.
    :param allow_register: whether unknown users may create an account.
    :param allow_guests: whether ``guest <name>`` logs in without an account.
    :param login_deadline: seconds a connection has to log in.
    :param max_message_length: longest message text, in characters.
    :param flood_burst: lines a connection may send at once...
    :param flood_rate: ...and then per second; faster lines wait (reading pauses).
    :param flood_limit: seconds of uninterrupted throttling before the
        connection is closed as a flood.
    :param lines_per_turn: lines of one connection handled per reactor turn;
        the rest wait (reading pauses) until the other connections have had
        their turn, so one fast sender's burst does not hold up everyone's
        direct messages, and one turn's output to each client stays small.
    :param turn_budget: seconds one connection's lines may take per reactor
        turn (as :attr:`lines_per_turn`, but for lines that cost much, such
        as broadcasts to thousands).
    :param flush_interval: least seconds between two flushes of the
        connections' output (:class:`~chatservice.server.output.OutputBatcher`):
        under load, what is written meanwhile leaves in one ``send`` per
        connection.  50 ms: at 100 broadcasts a second to 1000 users, 20 ms
        cost 4.2 us of CPU per delivery and 50 ms 2.3 us (a loopback
        ``send`` costs about as much for one line as for five), for a p99
        of 77 ms instead of 54 (``docs/benchmarks.rst``).
    :param output_soft_limit: bytes of unread output past which broadcasts,
        presence and room traffic to a connection are dropped (direct messages
        are kept for later).
    :param output_hard_limit: bytes of unread output past which the
        connection is closed.
    :param slow_reader_grace: seconds a connection may stay past the soft
        limit before it is closed, even if it never reaches the hard one.
    :param send_buffer: the kernel send buffer of each connection, in bytes
        (pinned, so unread output is counted by the server, not hidden in
        a kernel buffer that grows to megabytes).
    :param max_connections: connections the server takes at once.
    :param max_connections_per_address: connections one address may have.
    :param greeting_delay: seconds of silence after which a new connection
        is taken for a person and greeted (a program that speaks first, in
        JSON, is never sent the text greeting); 0 greets at once.
    :param tls_handshake_deadline: seconds a TLS connection has to finish its
        handshake (at most ``login_deadline``); then it is aborted.
    :param close_deadline: seconds a connection being closed has to take its
        last bytes and acknowledge the close; then it is aborted, so that a
        peer that never reads, or never answers a TLS close, holds no slot.
    """

    timeout: float = 600
    max_line_length: int = 8192
    bans: BanList = field(default_factory=BanList)
    allow_register: bool = False
    allow_guests: bool = False
    login_deadline: float = 60
    max_message_length: int = 8192
    flood_burst: int = 20
    flood_rate: float = 5.0
    flood_limit: float = 30.0
    lines_per_turn: int = 16
    turn_budget: float = 0.005
    flush_interval: float = 0.05
    output_soft_limit: int = 256 * 1024
    output_hard_limit: int = 1024 * 1024
    slow_reader_grace: float = 60.0
    send_buffer: int = 64 * 1024
    max_connections: int = 1000
    max_connections_per_address: int = 20
    greeting_delay: float = 0.25
    tls_handshake_deadline: float = 5.0
    close_deadline: float = 10.0
