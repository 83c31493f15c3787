"""A DNS server on loopback that answers every query at once with NXDOMAIN (for ircd-hybrid).

ircd-hybrid looks up every client's address (``*** Looking up your
hostname``) and has no option to stop it.  With the machine's resolver the
answer comes within a millisecond, except when a query is lost: then the
login waits for hybrid's resolver to time out (4 s), which the benchmark
would measure as hybrid's login latency.  :func:`bench.peers.start_hybrid`
points hybrid at this server instead (a ``resolv.conf`` in its working
directory, see :mod:`bench.fetch_peers`), so every lookup fails at once, as
with the other servers' lookups switched off.
"""

from __future__ import annotations

import socket
import struct
import threading

RCODE_NXDOMAIN = 3


def nxdomain_reply(query: bytes) -> bytes | None:
    """The NXDOMAIN answer to a DNS ``query`` (its id and question echoed), or ``None`` if it is not a query."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000:  # a response, not a query
        return None
    opcode = flags & 0x7800
    reply_flags = 0x8000 | opcode | (flags & 0x0100) | 0x0080 | RCODE_NXDOMAIN  # QR, opcode, RD, RA
    return struct.pack("!HHHHHH", ident, reply_flags, qdcount, 0, 0, 0) + query[12:]


class NxDomainServer:
    """Answers DNS queries on ``address:53`` (UDP) with NXDOMAIN, in a daemon thread, until :meth:`stop`."""

    def __init__(self, address: str, port: int = 53) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.5)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="nxdomain-dns")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                query, sender = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = nxdomain_reply(query)
            if reply is not None:
                try:
                    self.sock.sendto(reply, sender)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(2)
        self.sock.close()


def start_on_loopback(first: int = 53) -> NxDomainServer | None:
    """An :class:`NxDomainServer` on port 53 of a free address ``127.53.<n>.1``; ``None`` without the right to bind port 53."""
    for n in range(first, first + 50):
        try:
            return NxDomainServer(f"127.53.{n}.1")
        except PermissionError:
            return None
        except OSError:
            continue
    return None
