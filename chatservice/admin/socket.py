"""The admin socket: a running server's :class:`~chatservice.admin.actions.AdminActions`, over a UNIX socket.

A server listens on ``admin.sock`` in its data directory (``--admin-socket``
elsewhere), created when the service starts (once it holds the data
directory's lock, so a socket file left by a killed server is removed
first) with mode ``0600``, and removed when it stops.  The file's permission
is the authentication: only the user the server runs as (and root) can
connect.  (The socket is created with the process's umask, then made
``0600``: with the usual umask nobody else may connect meanwhile either.)

The protocol is JSON lines.  Each request is one object with an
``action`` (``list``, ``add``, ``passwd``, ``remove``, ``delete``,
``export``, ``grant``, ``revoke``, ``ban``, ``unban``, ``bans``,
``unlock``, ``purge``: :data:`chatservice.admin.actions._REQUESTS`), its fields, and optionally an ``id``
echoed in the reply.  Each reply is one object: ``{"ok": true, "result":
...}`` or ``{"ok": false, "code": ..., "error": ...}``.  The requests of one
connection are answered in order.  Until the server has loaded its state
every request is answered ``{"ok": false, "code": "starting"}``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from chatservice.admin.actions import AdminActions, AdminError

__all__ = ["AdminSocket", "AdminProtocol", "SOCKET_NAME", "MAX_REQUEST_BYTES"]

log = Logger()

SOCKET_NAME = "admin.sock"
"""The admin socket's name in the data directory."""

MAX_REQUEST_BYTES = 65536
"""The longest request line."""


def reply_line(reply: dict[str, Any]) -> bytes:
    """One reply as the socket sends it."""
    return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class AdminProtocol(LineOnlyReceiver):
    """One connection to the admin socket: requests in, replies out, in order."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_REQUEST_BYTES

    def __init__(self, actions: AdminActions, ready: Callable[[], bool]) -> None:
        self.actions = actions
        self.ready = ready
        self._queue: defer.Deferred[None] = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:
        self._queue.addCallback(lambda _: self._answer(line))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send({"ok": False, "code": "invalid_request", "error": "request too long"})
        self.transport.loseConnection()

    def _answer(self, line: bytes) -> defer.Deferred[None] | None:
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._send({"ok": False, "code": "invalid_request", "error": "not a JSON line"})
            return None
        if not isinstance(request, dict):
            self._send({"ok": False, "code": "invalid_request", "error": "not a JSON object"})
            return None
        echo = {"id": request["id"]} if "id" in request else {}
        if not self.ready():
            self._send({**echo, "ok": False, "code": "starting",
                        "error": "the server is starting or stopping; try again"})
            return None
        d = self.actions.run(request)
        d.addCallbacks(
            lambda result: self._send({**echo, "ok": True, "result": result}),
            self._failed, errbackArgs=(echo, request.get("action")),
        )
        return d

    def _failed(self, failure: Failure, echo: dict[str, Any], action: Any) -> None:
        if failure.check(AdminError):
            error = failure.value
            self._send({**echo, "ok": False, "code": error.code, "error": error.message})
            return
        log.failure("The admin action {action!r} failed", failure, action=action)
        self._send({**echo, "ok": False, "code": "internal",
                    "error": f"the action failed: {failure.getErrorMessage()}"})

    def _send(self, reply: dict[str, Any]) -> None:
        if self.transport is not None and self.connected:
            self.sendLine(reply_line(reply))


class AdminSocket(Service):
    """The admin socket of a running server, listening while the service runs.

    Started as a child of :class:`~chatservice.service.ChatService`, after
    the data directory is locked.

    :param path: the socket's path.
    :param actions: the server's actions (with its memory).
    :param ready: whether the server serves (its state is loaded).
    :param reactor: the reactor to listen with.
    """

    def __init__(
        self, path: Path, actions: AdminActions, ready: Callable[[], bool], reactor: Any
    ) -> None:
        self.path = path
        self.actions = actions
        self.ready = ready
        self.reactor = reactor
        self._port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        _remove_stale(self.path)
        factory = Factory.forProtocol(lambda: AdminProtocol(self.actions, self.ready))
        endpoint = endpoints.UNIXServerEndpoint(self.reactor, str(self.path), mode=0o600)
        d = endpoint.listen(factory)
        d.addCallback(self._listening)
        d.addErrback(lambda f: log.failure("The admin socket {path} cannot listen", f,
                                           path=str(self.path)))

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        log.info("Admin socket listening on {path}", path=str(self.path))

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return None
        return defer.maybeDeferred(port.stopListening)  # removes the file


def _remove_stale(path: Path) -> None:
    """Remove a socket left at ``path`` by a server that was killed (we hold the data directory)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
