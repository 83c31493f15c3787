"""``twistd chat --web`` for real: the page over HTTP and chat over its WebSocket, beside telnet.

A real ``twistd chat`` on 127.0.0.1 with ``--listen`` and ``--web``; the
WebSocket client is :class:`tests.ws_support.WebSocketClient` (wsproto over a
plain socket), the telnet user :class:`tests.e2e_support.LineClient`.  The
browser itself is driven in ``tests/test_web_browser.py``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Iterator

import pytest
from wsproto.events import TextMessage

from tests.e2e_support import ChatServer, served_cleanly
from tests.ws_support import WebSocketClient, WebSocketRejected

ACCOUNTS = {"yoda": "wise", "hans": "falcon", "luke": "jedi", "probe": "pw-probe"}


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    yield from served_cleanly(ChatServer(ACCOUNTS, timeout=30, web=True).start())


def origin(server: ChatServer) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def test_the_page_is_served_with_its_security_headers(server: ChatServer) -> None:
    with urllib.request.urlopen(f"{origin(server)}/", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert b"<html" in response.read()
    with pytest.raises(urllib.error.HTTPError) as listing:
        urllib.request.urlopen(f"{origin(server)}/../", timeout=10)
    assert listing.value.code in (403, 404)


def test_a_browser_and_a_telnet_user_chat(server: ChatServer) -> None:
    with WebSocketClient(server.web_port, origin=origin(server)) as browser, server.connect() as telnet:
        browser.send_json({"type": "login", "user": "yoda", "password": "wise", "id": 1})
        assert browser.read_json() == {
            "type": "login", "success": True, "user": "yoda", "guest": False, "id": 1,
        }
        telnet.login("hans", "falcon")
        assert browser.read_json() == {"type": "user_notification", "user": "hans", "status": True}
        telnet.send("message yoda hello from telnet")
        message = browser.read_json()
        assert (message["type"], message["from"], message["message"]) == ("message", "hans", "hello from telnet")
        assert telnet.read_line() == "Message delivered to yoda."
        browser.send_json({"type": "message", "message": "<img src=x onerror=alert(1)>", "id": 2})
        assert browser.read_json()["type"] == "broadcast_status"
        assert telnet.read_line() == "[broadcast] yoda: <img src=x onerror=alert(1)>"
        browser.send_json({"type": "logout", "id": 3})
        assert browser.wait_closed()[-1]["type"] == "disconnect"
        assert telnet.read_line() == "yoda logged out"
        telnet.send("logout")


def test_another_sites_page_is_refused(server: ChatServer) -> None:
    with pytest.raises(WebSocketRejected) as refused:
        WebSocketClient(server.web_port, origin="http://evil.example")
    assert refused.value.status == 403


def test_a_message_that_never_ends_closes_that_connection_only(server: ChatServer) -> None:
    with WebSocketClient(server.web_port, origin=origin(server)) as attacker:
        # One text message in fragments, never finished: up to 64 KiB of it.
        with pytest.raises((EOFError, ConnectionError)):
            for _ in range(64):
                fragment = TextMessage(data="x" * 1024, message_finished=False)
                attacker.sock.sendall(attacker.ws.send(fragment))
            attacker.read_message(timeout=5)
    with WebSocketClient(server.web_port, origin=origin(server)) as other:
        other.send_json({"type": "help", "id": 1})
        assert other.read_json()["type"] == "help"


def test_several_whole_messages_in_one_read_are_all_answered(server: ChatServer) -> None:
    # Four long messages sent at once reach the server in one read, longer
    # than the limit for one unfinished message: none of them is unfinished.
    with WebSocketClient(server.web_port) as browser:
        browser.send_json({"type": "login", "user": "probe", "password": "pw-probe", "id": 0})
        assert browser.read_json()["success"] is True
        burst = b"".join(
            browser.ws.send(TextMessage(json.dumps({"type": "broadcast", "message": "x" * 7000, "id": n})))
            for n in range(1, 5)
        )
        assert len(burst) > 2 * 8192 + 4096
        browser.sock.sendall(burst)
        replies = [browser.read_json() for _ in range(4)]
        assert [(r["type"], r["id"]) for r in replies] == [("broadcast_status", n) for n in range(1, 5)]
        browser.send_json({"type": "logout", "id": 5})
        assert browser.wait_closed()[-1]["type"] == "disconnect"


def test_login_lock_out_is_shared_with_tcp(server: ChatServer) -> None:
    with WebSocketClient(server.web_port) as browser:
        for attempt in range(3):
            browser.send_json({"type": "login", "user": "luke", "password": f"wrong{attempt}", "id": attempt})
        replies = [browser.read_json() for _ in range(3)]
        assert [reply["reason"] for reply in replies] == ["wrong_password", "wrong_password", "locked"]
    with server.connect(source=None) as telnet:
        telnet.greeted()
        telnet.send("luke")
        assert "blocked" in telnet.read_line()
        telnet.close()

