"""Which client versions this server speaks to."""

from __future__ import annotations

import chatservice

SERVER_VERSION = chatservice.__version__


def _parts(version: str) -> tuple[int, int] | None:
    fields = version.strip().split(".")
    if len(fields) < 2 or not all(f.isascii() and f.isdigit() for f in fields[:2]):
        return None
    return int(fields[0]), int(fields[1])


def compatible(client_version: str, server_version: str = SERVER_VERSION) -> bool:
    """Whether a client of ``client_version`` can use this server.

    The major versions must match; below 1.0 the minor versions must match too.
    """
    client, server = _parts(client_version), _parts(server_version)
    if client is None or server is None or client[0] != server[0]:
        return False
    return server[0] != 0 or client[1] == server[1]
