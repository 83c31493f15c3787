"""End to end: operators of a real ``twistd chat --operator yoda``, over TCP (text and JSON).

announce, whois, kick, ban (of a user and of an address), mute and unmute as an operator
types them, what their targets and everyone else see, the invalid-command
reply of a non-operator, the operator log, a ban kept across a restart
(SQLite), and ``--operator`` naming no account refusing to start.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from tests.e2e_support import (
    INVALID_COMMAND,
    ChatServer,
    ServerError,
    loopback_source,
)
from tests.ws_support import WebSocketClient

OPERATOR_OPTIONS = ["--operator", "yoda", "--operator", "leia"]


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer(timeout=30, options=OPERATOR_OPTIONS).start()
    try:
        yield server
    finally:
        server.stop()


def test_announce_whois_kick_ban(chat: ChatServer) -> None:
    yoda = chat.logged_in("yoda", "wise")
    hans = chat.logged_in_json("hans", "falcon")
    luke = chat.logged_in("luke", "jedi")
    yoda.sync()
    hans.sync_json()
    luke.sync()

    # Not an operator: nothing to see.
    luke.send("kick hans")
    assert luke.read_line() == INVALID_COMMAND
    luke.send("help kick")
    assert luke.read_line() == "Error. There is no command kick (type help for the list)."

    yoda.send("announce Maintenance at 22:00")
    assert yoda.read_line() == "Server notice sent to 2 users online."
    assert luke.read_line() == "*** Server notice from yoda: Maintenance at 22:00"
    notice = hans.read_json()
    assert (notice["type"], notice["from"], notice["message"]) == (
        "server_notice", "yoda", "Maintenance at 22:00",
    )

    yoda.send("whois hans")
    assert yoda.read_line() == "hans from 127.0.0.1 (json, not encrypted)"
    assert yoda.read_line().startswith("  logged in at ")

    yoda.send("kick luke enough")
    assert luke.read_line() == "You have been kicked off this server by yoda (reason: enough)."
    luke.wait_closed()
    assert yoda.read_line() == "luke logged out"
    assert yoda.read_line() == "Kicked luke (reason: enough)."
    assert hans.read_json() == {"type": "user_notification", "user": "luke", "status": False}

    yoda.send("ban hans 1h spamming")
    goodbye = hans.read_json()
    assert goodbye["type"] == "banned"
    assert goodbye["message"].startswith("You have been banned from this server by yoda until ")
    assert goodbye["message"].endswith(" (reason: spamming).")
    hans.wait_closed()
    assert yoda.read_line() == "hans logged out"
    assert yoda.read_line().startswith("Ban #1: user hans is banned until ")

    again = chat.connect()
    again.greeted()
    again.send_json({"type": "login", "user": "hans", "password": "falcon"})
    assert again.read_line() == ""
    refusal = again.read_json()
    assert (refusal["type"], refusal["success"], refusal["reason"]) == ("login", False, "banned")
    assert 3590 < refusal["retry_after"] <= 3600
    again.wait_closed()

    log = chat.log()
    assert "Operator yoda: kick luke (enough)" in log
    assert "Operator yoda: ban hans (spamming)" in log
    assert "Refused kick hans by luke: not an operator" in log

    # Kept in the store: after a restart hans is still banned, and yoda an operator.
    for client in (yoda, again):
        client.close()
    chat.restart()
    hans = chat.connect()
    hans.greeted()
    hans.send("hans")
    hans.read_until("Password: ")
    hans.send("falcon")
    assert hans.read_line().startswith("Error. You are banned from this server until ")
    hans.wait_closed()
    yoda = chat.logged_in("yoda", "wise")
    yoda.send("bans")
    assert yoda.read_line().startswith("#1 user hans, by yoda at ")
    yoda.send("unban hans")
    assert yoda.read_line() == "Removed 1 ban of hans."
    yoda.close()
    hans = chat.logged_in("hans", "falcon")
    hans.close()


def test_mute_and_unmute(chat: ChatServer) -> None:
    """A muted user's messages are refused with a reply saying why, over text and JSON; unmute ends it."""
    leia = chat.logged_in("leia", "princess")
    luke = chat.logged_in("luke", "jedi")
    hans = chat.logged_in_json("hans", "falcon")
    leia.sync()
    luke.sync()
    hans.sync_json()

    leia.send("mute luke 10m noise")
    assert leia.read_line().startswith("luke is muted until ")
    assert luke.read_line().startswith("*** Server notice from leia: You are muted until ")
    luke.send("message leia hello?")
    refused = luke.read_line()
    assert refused.startswith("Error. You are muted until ")
    assert refused.endswith(" by leia (reason: noise); your message was not sent.")
    leia.send("mute hans 1h")
    leia.read_line()
    hans.read_json()  # the notice
    hans.send_json({"type": "broadcast", "message": "anyone?", "id": "m"})
    reply = hans.read_json()
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "muted", "m")
    assert leia.sync() == []  # nothing reached anyone

    leia.send("unmute luke")
    assert leia.read_line() == "luke is no longer muted."
    luke.send("message leia back again")
    assert leia.read_line().endswith("back again")
    assert "Operator leia: mute luke (noise)" in chat.log()
    for client in (leia, luke, hans):
        client.close()


@pytest.mark.skipif(not loopback_source("127.0.0.5"), reason="needs 127.0.0.5 on loopback")
def test_address_ban_ends_sessions_and_refuses_connections(chat: ChatServer) -> None:
    leia = chat.logged_in_json("leia", "princess")
    obiwan = chat.logged_in("obiwan", "kenobi", source="127.0.0.5")
    leia.sync_json()
    leia.send_json({"type": "ban", "target": "127.0.0.5", "duration": "10m", "id": "b"})
    assert obiwan.read_line().startswith("You have been banned from this server by leia until ")
    obiwan.wait_closed()
    replies = leia.sync_json()
    done = next(reply for reply in replies if reply.get("id") == "b")
    assert (done["type"], done["action"], done["kind"], done["target"], done["count"]) == (
        "operator_done", "ban", "address", "127.0.0.5", 1,
    )
    refused = chat.connect(source="127.0.0.5")
    # Refused before the client has said a word: in JSON, which a person can read too.
    goodbye = json.loads(refused.wait_closed())
    assert goodbye["type"] == "banned"
    assert goodbye["message"].startswith("Your address is banned from this server until ")
    other = chat.connect(source="127.0.0.6" if loopback_source("127.0.0.6") else None)
    other.login("obiwan", "kenobi")
    other.close()
    leia.close()


def test_unknown_operator_refuses_to_start() -> None:
    server = ChatServer(options=["--operator", "vader"])
    with pytest.raises(ServerError) as raised:
        server.start()
    assert "--operator vader: there is no account vader" in str(raised.value)


def test_operator_on_the_web_socket() -> None:
    """The browser page's WebSocket is one more client: an operator uses it as any other."""
    server = ChatServer(timeout=30, web=True, options=OPERATOR_OPTIONS).start()
    try:
        origin = f"http://127.0.0.1:{server.web_port}"
        with WebSocketClient(server.web_port, origin=origin) as web, server.connect() as luke:
            web.send_json({"type": "login", "user": "yoda", "password": "wise", "id": 1})
            assert web.read_json()["success"] is True
            luke.login("luke", "jedi")
            assert web.read_json() == {"type": "user_notification", "user": "luke", "status": True}
            web.send_json({"type": "whois", "target": "yoda", "id": 2})
            report = web.read_json()
            assert (report["client"], report["tls"], report["operator"], report["id"]) == ("web", False, True, 2)
            web.send_json({"type": "announce", "message": "from the page", "id": 3})
            assert luke.read_line() == "*** Server notice from yoda: from the page"
            assert web.read_json() == {
                "type": "operator_done", "action": "announce", "target": "", "count": 1,
                "until": None, "reason": "", "id": 3,
            }
            luke.send("whois yoda")
            assert luke.read_line() == INVALID_COMMAND
    finally:
        server.stop()
