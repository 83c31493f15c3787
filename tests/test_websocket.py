"""The WebSocket adapter and the web site, with Twisted's test tools (no browser, no sockets).

:class:`ChatWebSocket` is driven as ``twisted.web.websocket`` drives it
(``negotiationStarted``, ``negotiationFinished``, ``textMessageReceived``,
``connectionLost``) over a recording WebSocket transport and a
StringTransport stream, on the harness's chat (a :class:`Clock`); the site's
resources are rendered with ``DummyRequest``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from chatservice.server.websocket import ChatWebSocket, ChatWebSocketFactory, InputGuard, InputGuardFactory, MessageQueue
from chatservice.server.lines import TOO_LONG
from chatservice.web.site import CONTENT_SECURITY_POLICY, ChatWebSocketResource, chat_site
from tests.support import ChatHarness
from tests.test_protocol import HarnessTestCase
from tests.ws_support import server_frames


class RecordingWebSocket:
    """A ``WebSocketTransport`` that records the producer attached and the close.

    The chat writes its frames (already framed, once per event) to the
    stream under the WebSocket; :attr:`messages` reads them back from it.
    """

    def __init__(self, stream: StringTransport | None = None) -> None:
        self.stream = stream
        self.producer: Any = None
        self.closed_with: int | None = None

    @property
    def messages(self) -> list[str]:
        """The text messages written to the stream and not yet read by :meth:`json`."""
        return server_frames(self.stream.value()) if self.stream is not None else []

    def sendTextMessage(self, text: str) -> None:
        raise AssertionError("the chat writes its own frames to the stream")

    def sendBytesMessage(self, data: bytes) -> None:
        raise AssertionError("the chat sends text messages only")

    def loseConnection(self, code: int = 1000) -> None:
        self.closed_with = code

    def ping(self, payload: bytes = b"") -> None:
        pass

    def attachProducer(self, producer: Any) -> None:
        assert self.producer is None, "a producer is attached already"
        self.producer = producer

    def detachProducer(self) -> None:
        self.producer = None

    def json(self) -> list[dict[str, Any]]:
        """The messages sent since the last call, parsed (each must be one JSON object)."""
        sent = self.messages
        if self.stream is not None:
            self.stream.clear()
        return [json.loads(message) for message in sent]


class FakeChannel:
    """The upgraded HTTP channel: its stream (which still has the channel as producer) and its timer."""

    def __init__(self, host: str) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 50000))
        self.transport.registerProducer(self, True)
        self.timeout: float | None = 60.0

    def setTimeout(self, seconds: float | None) -> None:
        self.timeout = seconds


class FakeRequest:
    """What :class:`ChatWebSocket` reads of the upgraded request."""

    def __init__(self, host: str) -> None:
        self.channel = FakeChannel(host)

    def getClientAddress(self) -> IPv4Address:
        return self.channel.transport.getPeer()


class Browser:
    """One WebSocket client of the harness's chat, driven through :class:`ChatWebSocket`."""

    def __init__(self, harness: ChatHarness, host: str = "10.7.0.1") -> None:
        factory = harness.factory
        self.request = FakeRequest(host)
        self.websocket = RecordingWebSocket(self.request.channel.transport)
        self.protocol = ChatWebSocketFactory(factory.gate, factory.clock, factory.registry).buildProtocol(self.request)  # type: ignore[arg-type]
        self.protocol.negotiationStarted(self.websocket)
        self.protocol.negotiationFinished()

    @property
    def stream(self) -> StringTransport:
        return self.request.channel.transport

    def send(self, obj: dict[str, Any]) -> None:
        self.protocol.textMessageReceived(json.dumps(obj))

    def drop(self) -> None:
        self.protocol.connectionLost(None)  # type: ignore[arg-type]


class TunableStream(StringTransport):
    """A stream with a socket: records ``TCP_NODELAY`` and the socket options set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.no_delay: bool | None = None
        self.options: list[tuple[int, int, int]] = []

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled

    def getHandle(self) -> Any:
        stream = self

        class Socket:
            def setsockopt(self, level: int, option: int, value: int) -> None:
                stream.options.append((level, option, value))

        return Socket()


class ChatWebSocketTests(HarnessTestCase):
    """A WebSocket client is a JSON client of the same chat, with the same rules."""

    def browser(self) -> Browser:
        browser = Browser(self.harness)
        self.addCleanup(browser.drop)
        return browser

    def test_the_socket_under_the_websocket_is_tuned_as_tcps(self) -> None:
        import socket

        request = FakeRequest("10.7.0.9")
        stream = TunableStream(peerAddress=IPv4Address("TCP", "10.7.0.9", 50000))
        stream.registerProducer(request.channel, True)
        request.channel.transport = stream
        factory = self.harness.factory
        protocol = ChatWebSocketFactory(factory.gate, factory.clock, factory.registry).buildProtocol(
            request  # type: ignore[arg-type]
        )
        protocol.negotiationStarted(RecordingWebSocket())  # type: ignore[arg-type]
        protocol.negotiationFinished()
        self.addCleanup(protocol.connectionLost, None)  # type: ignore[arg-type]
        self.assertIs(stream.no_delay, True, "small messages leave without waiting (no Nagle)")
        self.assertIn((socket.SOL_SOCKET, socket.SO_SNDBUF, factory.policy.send_buffer), stream.options)

    def test_json_from_the_first_message_and_nothing_else(self) -> None:
        browser = self.browser()
        self.assertEqual(browser.websocket.messages, [], "no greeting")
        browser.send({"type": "login", "user": "yoda", "password": "wise", "id": 1})
        self.assertEqual(
            browser.websocket.json(),
            [{"type": "login", "success": True, "user": "yoda", "guest": False, "id": 1}],
        )

    def test_a_browser_chats_with_a_telnet_user(self) -> None:
        browser = self.browser()
        browser.send({"type": "login", "user": "yoda", "password": "wise"})
        (hans,) = self.online("hans")
        browser.websocket.json()
        hans.send("message yoda hello browser")
        (message,) = browser.websocket.json()
        self.assertEqual((message["type"], message["from"], message["message"]), ("message", "hans", "hello browser"))
        self.assertEqual(hans.lines(), ["Message delivered to yoda."])
        browser.send({"type": "message", "message": "hello everyone", "id": 2})
        self.assertEqual(hans.lines(), ["[broadcast] yoda: hello everyone"])
        self.assertEqual(browser.websocket.json()[0]["type"], "broadcast_status")

    def test_each_line_is_one_message(self) -> None:
        browser = self.browser()
        browser.send({"type": "login", "user": "yoda", "password": "wise"})
        luke, hans = self.online("luke", "hans")
        sent = browser.websocket.messages
        self.assertEqual(len(sent), 3)  # login, luke and hans logged in
        for message in sent:
            self.assertNotIn("\n", message)

    def test_the_writer_is_the_streams_producer(self) -> None:
        browser = self.browser()
        self.assertIs(browser.websocket.producer, browser.protocol.connection.writer)
        self.assertIsNone(browser.request.channel.timeout, "the HTTP idle timer is off")

    def test_an_over_long_message_is_refused_and_the_connection_goes_on(self) -> None:
        browser = self.browser()
        browser.protocol.textMessageReceived("{" + "x" * 9000 + "}")
        browser.send({"type": "help", "id": 5})
        replies = browser.websocket.json()
        self.assertEqual([r.get("code") for r in replies], ["line_too_long", None])
        self.assertEqual(replies[1]["id"], 5)

    def test_flood_control_pauses_the_stream(self) -> None:
        self.harness.close_all()
        self.harness = ChatHarness(flood_burst=3, flood_rate=1.0)
        browser = self.browser()
        for index in range(6):
            browser.send({"type": "help", "id": index})
        self.assertEqual(browser.stream.producerState, "paused")
        # The burst, and the line that found the bucket empty; the rest wait.
        self.assertEqual(len(browser.websocket.json()), 4)
        self.harness.clock.advance(5)
        self.assertEqual([r["id"] for r in browser.websocket.json()], [4, 5])
        self.assertEqual(browser.stream.producerState, "producing")

    def test_logout_closes_the_websocket(self) -> None:
        browser = self.browser()
        browser.send({"type": "login", "user": "yoda", "password": "wise"})
        browser.send({"type": "logout", "id": 9})
        self.assertEqual(browser.websocket.json()[-1]["type"], "disconnect")
        self.assertEqual(browser.websocket.closed_with, 1000)
        self.assertNotIn("yoda", self.harness.state.sessions)

    def test_a_slow_reader_is_dropped(self) -> None:
        self.harness.close_all()
        self.harness = ChatHarness(
            output_soft_limit=1024, output_hard_limit=2048, slow_reader_grace=5
        )
        browser = self.browser()
        browser.send({"type": "login", "user": "yoda", "password": "wise"})
        browser.protocol.connection.writer.pauseProducing()  # the browser stopped reading
        (hans,) = self.online("hans")
        for _ in range(10):
            hans.send("broadcast " + "x" * 200)
        self.assertTrue(browser.protocol.connection.congested)
        self.harness.clock.advance(5)
        self.assertTrue(browser.protocol.connection.writer.closed)
        self.assertTrue(browser.stream.disconnecting, "aborted under the WebSocket")
        self.harness.clock.advance(0)
        self.assertNotIn("yoda", self.harness.state.sessions)

    def test_lost_connection_logs_out_and_leaves_the_registry(self) -> None:
        browser = Browser(self.harness)
        browser.send({"type": "login", "user": "yoda", "password": "wise"})
        self.assertEqual(len(self.harness.factory.connections), 1)
        browser.drop()
        self.assertNotIn("yoda", self.harness.state.sessions)
        self.assertEqual(self.harness.factory.connections, set())
        browser.protocol.textMessageReceived('{"type": "help"}')  # too late: ignored

    def test_banned_address_and_caps_apply(self) -> None:
        self.harness.close_all()
        self.harness = ChatHarness(max_connections_per_address=1)
        self.browser()
        second = self.browser()
        (refusal,) = second.websocket.json()
        self.assertEqual(refusal["reason"], "too_many_connections")
        self.assertEqual(second.websocket.closed_with, 1000)


class MessageQueueTests(unittest.TestCase):
    def test_messages_in_order_and_too_long_marked(self) -> None:
        queue = MessageQueue(5)
        for message in (b"12345", b"123456", b"ok"):
            queue.add(message)
        self.assertTrue(queue.has_line())
        self.assertEqual([queue.pop(), queue.pop(), queue.pop(), queue.pop()], [b"12345", TOO_LONG, b"ok", None])
        self.assertFalse(queue.has_line())


class InputGuardTests(unittest.TestCase):
    """Bytes that never complete a WebSocket message are not gathered without end."""

    def guard(self) -> tuple[InputGuard, StringTransport, list[bytes]]:
        received: list[bytes] = []

        class Inner:
            def makeConnection(self, transport: Any) -> None:
                self.guard = transport

            def dataReceived(self, data: bytes) -> None:
                received.append(data)
                if data.endswith(b";"):  # a message completed in this piece
                    self.guard.message_complete()

            def connectionLost(self, reason: Any) -> None:
                pass

        class InnerFactory:
            def buildProtocol(self, addr: Any) -> Inner:
                return Inner()

            def doStart(self) -> None:
                pass

            def doStop(self) -> None:
                pass

        wrapping = InputGuardFactory(InnerFactory(), input_limit=100)
        guard = wrapping.buildProtocol(None)
        transport = StringTransport()
        guard.makeConnection(transport)
        return guard, transport, received

    def test_plain_http_is_not_counted(self) -> None:
        guard, transport, received = self.guard()
        for _ in range(10):
            guard.dataReceived(b"x" * 60)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(received), 10)

    def test_a_websocket_without_messages_is_closed_past_the_limit(self) -> None:
        guard, transport, received = self.guard()
        guard.arm()
        guard.dataReceived(b"x" * 60)
        guard.message_complete()
        guard.dataReceived(b"x" * 60)
        self.assertFalse(transport.disconnecting)
        guard.dataReceived(b"x" * 60)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(b"".join(received), b"x" * 160, "no byte over the limit is passed on")
        guard.dataReceived(b"x")
        self.assertEqual(len(b"".join(received)), 160, "nothing is passed on once closed")

    def test_one_read_of_many_whole_messages_is_not_closed(self) -> None:
        # A client that sent messages faster than the server read them: one
        # read holds far more than the limit, all of it whole messages.
        guard, transport, received = self.guard()
        guard.arm()
        burst = (b"x" * 49 + b";") * 8
        guard.dataReceived(burst)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(b"".join(received), burst)
        self.assertTrue(all(len(piece) <= 100 for piece in received))

    def test_an_unfinished_message_after_whole_ones_is_still_closed(self) -> None:
        guard, transport, received = self.guard()
        guard.arm()
        guard.dataReceived(b"x" * 49 + b";" + b"y" * 300)
        self.assertTrue(transport.disconnecting)
        self.assertLessEqual(len(b"".join(received)), 50 + 2 * 100)


class PlainRequest(DummyRequest):
    """A ``DummyRequest`` over plain HTTP."""

    path = b"/ws"

    def isSecure(self) -> bool:
        return False


class SiteTests(HarnessTestCase):
    """The page's resources: security headers, no listings, the Origin check."""

    def render(self, resource: Any, request: DummyRequest) -> bytes:
        result = resource.render(request)
        return result if isinstance(result, bytes) else b"".join(request.written)

    def test_the_page_has_the_security_headers(self) -> None:
        site = chat_site(self.harness.factory).wrappedFactory
        request = DummyRequest([b""])
        page = site.resource.getChildWithDefault(b"", request)
        self.render(page, request)
        headers = request.responseHeaders
        self.assertEqual(headers.getRawHeaders(b"content-security-policy"), [CONTENT_SECURITY_POLICY.encode()])
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        self.assertEqual(headers.getRawHeaders(b"referrer-policy"), [b"no-referrer"])
        self.assertIn("script-src 'self'", CONTENT_SECURITY_POLICY)
        self.assertNotIn("unsafe", CONTENT_SECURITY_POLICY)

    def test_a_foreign_origin_is_refused(self) -> None:
        resource = ChatWebSocketResource(
            ChatWebSocketFactory(
                self.harness.factory.gate, self.harness.clock, self.harness.factory.registry
            ),
            origins=["https://chat.example.org/"],
        )
        for origin, refused in (
            (b"http://evil.example", True),
            (b"http://127.0.0.1:8080", False),  # the page's own
            (b"https://chat.example.org", False),  # --web-origin
        ):
            request = PlainRequest([b"ws"])
            request.requestHeaders.setRawHeaders(b"host", [b"127.0.0.1:8080"])
            request.requestHeaders.setRawHeaders(b"origin", [origin])
            body = self.render(resource, request)
            if refused:
                self.assertEqual(request.responseCode, 403, origin)
                self.assertIn(b"own origin", body)
            else:
                # Past the Origin check: the WebSocket handshake itself (this
                # request has no upgrade headers, so it fails there instead).
                self.assertEqual(request.responseCode, 400, origin)
