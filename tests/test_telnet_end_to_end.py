"""Telnet against a real ``twistd chat``: raw sockets that speak telnet, and one that is ``nc``.

The telnet client answers as ``telnet`` does (``DO ECHO`` to ``WILL ECHO``,
Ctrl-C as ``IAC IP IAC DO TIMING-MARK``); the ``nc`` client sends lines and
answers nothing.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.e2e_support import GREETING, ChatServer, LineClient, served_cleanly, welcome

IAC = b"\xff"
WILL, WONT, DO, DONT = b"\xfb", b"\xfc", b"\xfd", b"\xfe"
IP, ECHO, TM = b"\xf4", b"\x01", b"\x06"


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    yield from served_cleanly(ChatServer(timeout=30).start())


def read_raw(client: LineClient, marker: bytes) -> bytes:
    """Every byte received up to ``marker``, telnet included (what a telnet client parses)."""
    client.read_until(marker.replace(IAC + WILL + ECHO, b"").replace(IAC + WONT + ECHO, b""))
    raw, client.raw = client.raw, b""
    assert raw.endswith(marker) or marker in raw, raw
    return raw


def test_telnet_client(server: ChatServer) -> None:
    with server.connect() as telnet, server.connect() as hans:
        hans.login("hans", "falcon")
        assert telnet.read_line() == GREETING
        telnet.read_until("Username: ")
        telnet.raw = b""
        telnet.send("yoda")
        assert read_raw(telnet, b"Password: ") == IAC + WILL + ECHO + b"Password: "
        telnet.send_raw(IAC + DO + ECHO)  # telnet stops echoing
        telnet.send("wise")
        assert telnet.read_line() == ""  # the newline the client did not echo
        line = telnet.read_line()
        assert line == welcome("yoda"), line
        raw, telnet.raw = telnet.raw, b""
        assert raw.startswith(b"\r\n" + IAC + WONT + ECHO + b"Welcome"), raw
        assert b"wise" not in raw
        telnet.send_raw(IAC + DONT + ECHO)
        # Ctrl-C in the middle of a line: answered at once, the line dropped.
        telnet.send_raw(b"message hans I am typ" + IAC + IP + IAC + DO + TM)
        assert _more(telnet, b"\r\n" + IAC + WILL + TM), telnet.raw
        assert telnet.read_line() == ""
        telnet.send("message hans the whole line")
        assert hans.sync() == ["yoda logged in", "yoda: the whole line"]
        assert telnet.read_line() == "Message delivered to hans."
        # Again: every Ctrl-C is answered.
        telnet.raw = b""
        telnet.send_raw(IAC + IP + IAC + DO + TM)
        assert _more(telnet, IAC + WILL + TM), telnet.raw
        assert telnet.read_line() == ""
        # Options the client offers are refused.
        telnet.send_raw(IAC + WILL + b"\x18" + IAC + DO + b"\x03")
        assert _more(telnet, IAC + DONT + b"\x18" + IAC + WONT + b"\x03"), telnet.raw
        telnet.send("whoelse")
        assert telnet.sync() == ["hans"]


def _more(client: LineClient, expected: bytes) -> bool:
    """Wait (briefly) until ``expected`` arrived among the raw bytes."""
    deadline = time.monotonic() + client.timeout
    while expected not in client.raw:
        if not client._fill(deadline):
            return False
    return True


def test_nc_client(server: ChatServer) -> None:
    with server.connect() as nc:
        nc.login("luke", "jedi")  # reads through the bytes nc's terminal gets
        nc.send("passwd")
        nc.read_until("Old password: ")
        nc.send("jedi")
        nc.read_until("New password: ")
        nc.send("jedi2")
        nc.read_until("Repeat the password: ")
        nc.send("jedi2")
        assert nc.read_line() == "Your password has been changed."
        nc.send("whoelse")
        assert nc.sync() in (["No other users are online."], ["hans"], ["yoda"], ["hans", "yoda"])
        # One offer to stop echoing, never answered, so never repeated; no
        # newline added (nc's terminal showed the user's own).
        assert nc.raw.count(IAC) == 1, nc.raw
        assert IAC + WILL + ECHO + b"Password: " in nc.raw
        assert b"\r\n\r\n" not in nc.raw
    log = server.log()
    assert "jedi2" not in log and "wise" not in log


def test_server_log(server: ChatServer) -> None:
    """The start-up line names the files and endpoints; sessions are logged with the address."""
    with server.connect() as client:
        client.login("leia", "princess")
        client.send("logout")
        client.wait_closed()
    deadline = time.monotonic() + 5
    while "Logout: leia" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    log = server.log()
    assert (
        f"Chat service started: 5 accounts from {server.directory / 'credentials.txt'};"
        f" data in {server.data_dir} (sqlite store); listening on tcp:0:interface=127.0.0.1"
    ) in log, log
    assert "Login: leia from 127.0.0.1 (text)" in log
    assert "Logout: leia from 127.0.0.1" in log
    assert "princess" not in log
