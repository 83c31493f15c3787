"""The web site of ``twistd chat --web``: the chat page, its WebSocket at ``/ws``, and their security headers.

Every response carries a strict Content-Security-Policy (scripts, styles
and connections only from the page's own origin; nothing inline, no
frames, no forms posting elsewhere), ``nosniff`` and ``no-referrer``.  The
WebSocket refuses a browser whose ``Origin`` is not the page's own (or one
given with ``--web-origin``), so another site cannot use a visitor's
browser to chat in their name.  The files are served from the package's
``static/`` folder, without directory listings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from twisted.web import pages, resource, static
from twisted.web.server import Request, Site
from twisted.web.websocket import WebSocketResource

from chatservice.server.factory import ChatFactory
from chatservice.server.policy import ConnectionPolicy
from chatservice.server.websocket import ChatWebSocketFactory, InputGuardFactory

STATIC = Path(__file__).parent / "static"
"""The page's files."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    b"Content-Security-Policy": CONTENT_SECURITY_POLICY.encode("ascii"),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cross-Origin-Opener-Policy": b"same-origin",
}


def secure(request: Request) -> None:
    """Set the security headers on ``request``'s response."""
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


class PageFiles(static.File):
    """The static files, each with the security headers; no directory listings."""

    def render(self, request: Request) -> bytes | int:
        secure(request)
        return super().render(request)

    def directoryListing(self) -> resource.Resource:
        return pages.forbidden(brief="No listing.")


def own_origin(request: Request) -> str:
    """The origin the page was served from, as a browser names it (``http://host:port``)."""
    scheme = "https" if request.isSecure() else "http"
    host = (request.getHeader("host") or "").lower()
    return f"{scheme}://{host}"


class ChatWebSocketResource(WebSocketResource):
    """``/ws``: the chat WebSocket, for the page's own origin (and ``origins``) only.

    A request without ``Origin`` is not a browser's (browsers always send it
    on a WebSocket) and is let through: a program can say anything it likes
    there, so the header only protects browsers.

    :param factory: builds the chat WebSocket of each accepted request.
    :param origins: other origins allowed, e.g. ``https://chat.example.org``.
    """

    def __init__(self, factory: ChatWebSocketFactory, origins: Iterable[str] = ()) -> None:
        super().__init__(factory)
        self.origins = frozenset(origin.lower().rstrip("/") for origin in origins)

    def render_GET(self, request: Request) -> bytes | int:
        secure(request)
        origin = request.getHeader("origin")
        if origin is not None and origin.lower() not in self.origins | {own_origin(request)}:
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"This WebSocket only serves the chat page's own origin.\n"
        return super().render_GET(request)


def chat_site(factory: ChatFactory, origins: Iterable[str] = ()) -> InputGuardFactory:
    """The web site for ``--web`` listeners: the page, and ``/ws`` on ``factory``'s chat.

    WebSocket connections share the TCP connections' login gate, limits and
    registry (caps, bans, shutdown).
    """
    root = PageFiles(str(STATIC))
    websockets = ChatWebSocketFactory(factory.gate, factory.clock, factory.registry)
    root.putChild(b"ws", ChatWebSocketResource(websockets, origins))
    site = Site(root)
    site.displayTracebacks = False
    return InputGuardFactory(site, input_limit(factory.policy))


def input_limit(policy: ConnectionPolicy) -> int:
    """Bytes a client may send without completing a WebSocket message, with ``policy``'s longest line."""
    return 2 * policy.max_line_length + 4096


def follow_line_length(site: InputGuardFactory, policy: ConnectionPolicy) -> None:
    """After a reload (:meth:`chatservice.reload.Reloader.follow`): ``site``'s input limit follows ``policy``'s longest line."""
    site.input_limit = input_limit(policy)
