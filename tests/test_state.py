"""Tests for :mod:`chatservice.state`: :class:`ChatState` and :class:`Session`, without a network.

Each test drives the state directly with recording fake clients, an in-memory
store (behind a :class:`LocalStore`, so every Deferred has fired when a call
returns) and accounts, and a :class:`~twisted.internet.task.Clock` for time.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice import events

from chatservice.commands import CommandError, Request
from chatservice.session import Session
from chatservice.state import AlreadyLoggedIn, ChatState
from chatservice.store.interface import StoredMessage
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.support import memory_accounts

ACCOUNTS = {
    "yoda": "wise",
    "hans": "falcon",
    "luke": "jedi",
    "obiwan": "kenobi",
    "leia": "princess",
}

START = 1_700_000_000.0


def summary(event: events.Event) -> tuple[Any, ...]:
    """An event as ``(class name, field values...)``, for exact comparisons (events compare by identity)."""
    return (type(event).__name__,) + tuple(
        getattr(event, f.name) for f in dataclasses.fields(event) if f.compare
    )


class RecordingClient:
    """A fake :class:`~chatservice.interfaces.ClientConnection` that records what it is sent.

    :param on_disconnect: called after a disconnect is recorded (e.g. to end the session,
        as a real connection does when it closes).
    """

    def __init__(
        self, host: str = "10.0.0.1", on_disconnect: Callable[[], None] | None = None
    ) -> None:
        self.host = host
        self.p2p_port: int | None = None
        self.udp_port: int | None = None
        self.congested = False
        self.delivered: list[events.Event] = []
        self.disconnects: list[events.Disconnected] = []
        self.on_disconnect = on_disconnect

    def deliver(self, event: events.Event) -> None:
        self.delivered.append(event)

    def disconnect(self, event: events.Disconnected) -> None:
        self.disconnects.append(event)
        if self.on_disconnect is not None:
            self.on_disconnect()

    def take(self) -> list[tuple[Any, ...]]:
        """Summaries of the events delivered since the last call."""
        delivered, self.delivered = self.delivered, []
        return [summary(event) for event in delivered]


class StateTestCase(unittest.TestCase):
    """Common set-up: a ChatState over a MemoryStore, in-memory accounts and a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.accounts = memory_accounts(ACCOUNTS, self.clock)
        self.store = MemoryStore()
        self.state = ChatState(
            LocalStore(self.store), self.accounts, self.clock, session_factory=Session
        )
        self.clients: dict[str, RecordingClient] = {}
        self.addCleanup(self.assertNoDelayedCalls)

    def assertNoDelayedCalls(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def login(self, username: str) -> Session:
        """Attach and begin a session for ``username`` with a fresh recording client."""
        client = self.clients[username] = RecordingClient()
        session = self.state.attach(username, client)
        session.begin()
        return session

    def online(self, *usernames: str) -> list[Session]:
        """Log each user in, then forget everything they were told so far."""
        sessions = [self.login(username) for username in usernames]
        for username in usernames:
            self.clients[username].take()
        return sessions

    def replied(self, d: defer.Deferred[events.Event]) -> tuple[Any, ...]:
        """The :func:`summary` of the event ``d`` has fired with (a local store answers at once)."""
        return summary(self.successResultOf(d))

    def commandError(self, f: Callable[..., Any], *args: Any) -> CommandError:
        """The CommandError that ``f(*args)`` raises, or that its Deferred fails with."""
        failure = self.failureResultOf(defer.maybeDeferred(f, *args), CommandError)
        return failure.value

    def assertCommandError(
        self, code: str, message: str, f: Callable[..., Any], *args: Any
    ) -> None:
        error = self.commandError(f, *args)
        self.assertEqual((error.code, error.message), (code, message))


class AttachTests(StateTestCase):
    """attach() creates sessions and refuses a second login of the same user."""

    def test_attach_creates_session(self) -> None:
        client = RecordingClient()
        session = self.state.attach("yoda", client)
        self.assertIsInstance(session, Session)
        self.assertEqual(session.username, "yoda")
        self.assertIs(session.client, client)
        self.assertIs(session.state, self.state)
        self.assertEqual(session.logged_in_at, START)
        self.assertEqual(self.state.sessions, {"yoda": session})

    def test_second_attach_refused(self) -> None:
        first = self.login("yoda")
        error = self.assertRaises(AlreadyLoggedIn, self.state.attach, "yoda", RecordingClient())
        self.assertEqual(error.args, ("yoda",))
        self.assertIs(self.state.sessions["yoda"], first)

    def test_attach_again_after_logout(self) -> None:
        first = self.login("yoda")
        first.end()
        second = self.state.attach("yoda", RecordingClient())
        self.assertIsNot(second, first)
        self.assertEqual(self.state.sessions, {"yoda": second})

    def test_begin_announces_login_to_others_only(self) -> None:
        self.online("hans", "luke")
        self.login("yoda")
        self.assertEqual(self.clients["hans"].take(), [("Presence", "yoda", True)])
        self.assertEqual(self.clients["luke"].take(), [("Presence", "yoda", True)])
        self.assertEqual(self.clients["yoda"].take(), [])


class DetachTests(StateTestCase):
    """detach()/end() leave the online set once, record last-seen and tell the others."""

    def test_end_announces_logout_and_records_last_seen(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        self.clock.advance(30)
        yoda.end()
        self.assertEqual(list(self.state.sessions), ["hans"])
        self.assertEqual(self.clients["hans"].take(), [("Presence", "yoda", False)])
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(list(self.store.last_seen()), [("yoda", START + 30)])

    def test_end_is_idempotent(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        yoda.end()
        self.clock.advance(10)
        yoda.end()
        self.state.detach(yoda)
        self.assertEqual(self.clients["hans"].take(), [("Presence", "yoda", False)])
        self.assertEqual(list(self.store.last_seen()), [("yoda", START)])

    def test_stale_session_end_leaves_new_session(self) -> None:
        """Ending an old session of a user who logged in again changes nothing."""
        (old,) = self.online("yoda")
        self.online("hans")
        old.end()
        new = self.login("yoda")
        self.clients["hans"].take()
        self.clock.advance(5)
        old.end()
        self.assertIs(self.state.sessions["yoda"], new)
        self.assertEqual(self.clients["hans"].take(), [])
        self.assertEqual(list(self.store.last_seen()), [("yoda", START)])


class WhoElseTests(StateTestCase):
    """whoelse lists the other online users, sorted."""

    def test_sorted_and_excludes_self(self) -> None:
        luke, yoda, _hans, _leia = self.online("luke", "yoda", "hans", "leia")
        reply = yoda.whoelse()
        self.assertEqual(summary(reply), ("UserList", ("hans", "leia", "luke"), None, True, ()))
        self.assertEqual(luke.whoelse().users, ("hans", "leia", "yoda"))

    def test_alone(self) -> None:
        (yoda,) = self.online("yoda")
        self.assertEqual(yoda.whoelse().users, ())

    def test_logged_out_user_not_listed(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        hans.end()
        self.assertEqual(yoda.whoelse().users, ())

    def test_via_execute(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        reply = yoda.execute(Request("whoelse"))
        self.assertEqual(summary(reply), ("UserList", ("hans",), None, True, ()))


class WhoElseSinceTests(StateTestCase):
    """whoelsesince adds users who logged out within the window."""

    def setUp(self) -> None:
        super().setUp()
        # hans leaves at START+10, luke at START+50; leia stays; now is START+100.
        self.yoda, hans, luke, _leia = self.online("yoda", "hans", "luke", "leia")
        self.clock.advance(10)
        hans.end()
        self.clock.advance(40)
        luke.end()
        self.clock.advance(50)

    def test_window(self) -> None:
        reply = self.yoda.whoelsesince(60)
        self.assertEqual(summary(reply), ("UserList", ("leia", "luke"), 60, True, ()))

    def test_boundary_included(self) -> None:
        """A user who logged out exactly ``seconds`` ago is listed."""
        self.assertEqual(self.yoda.whoelsesince(90).users, ("hans", "leia", "luke"))

    def test_just_outside_window(self) -> None:
        self.assertEqual(self.yoda.whoelsesince(89.5).users, ("leia", "luke"))

    def test_zero_lists_online_only(self) -> None:
        self.assertEqual(self.yoda.whoelsesince(0).users, ("leia",))

    def test_relogged_user_listed_once_and_self_excluded(self) -> None:
        self.login("hans")
        self.yoda.end()
        yoda = self.login("yoda")
        self.assertEqual(yoda.whoelsesince(1000).users, ("hans", "leia", "luke"))

    def test_via_execute(self) -> None:
        reply = self.yoda.execute(Request("whoelsesince", {"seconds": 50.0}))
        self.assertEqual(summary(reply), ("UserList", ("leia", "luke"), 50.0, True, ()))

    def test_last_is_in_minutes(self) -> None:
        reply = self.yoda.execute(Request("last", {"minutes": 1.5}))
        self.assertEqual(summary(reply), ("UserList", ("hans", "leia", "luke"), 90.0, True, ()))
        self.assertEqual(self.yoda.last(0.5).users, ("leia",))

    def test_last_huge_minutes_gives_finite_window(self) -> None:
        """``last 1e308`` must not make an infinite window (JSON would carry ``Infinity``)."""
        try:
            reply = self.yoda.last(1e308)
        except CommandError as e:
            self.assertEqual(e.code, "bad_argument")
        else:
            self.assertTrue(math.isfinite(reply.since), reply.since)



class MessageTests(StateTestCase):
    """Direct messages: live when online, stored when offline, delivered at login."""

    def test_online_recipient(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        self.clock.advance(3)
        reply = self.successResultOf(yoda.message("hans", "Hey Dude"))
        self.assertEqual(summary(reply), ("MessageSent", "hans", False, False, None))
        self.assertEqual(
            self.clients["hans"].take(),
            [("DirectMessage", "yoda", "Hey Dude", START + 3, False)],
        )
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(self.store.offline_messages("hans"), [])

    def test_via_execute(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        d = yoda.execute(Request("message", {"to": "hans", "message": "hi"}))
        reply = self.successResultOf(d)
        self.assertEqual(summary(reply), ("MessageSent", "hans", False, False, None))
        self.assertEqual(
            self.clients["hans"].take(), [("DirectMessage", "yoda", "hi", START, False)]
        )

    def test_offline_recipient_stored(self) -> None:
        (yoda,) = self.online("yoda")
        reply = self.successResultOf(yoda.message("luke", "come back"))
        self.assertEqual(summary(reply), ("MessageSent", "luke", True, False, None))
        self.assertEqual(
            self.store.offline_messages("luke"),
            [StoredMessage(1, "yoda", "luke", "come back", START)],
        )

    def test_offline_delivery_in_order_then_removed(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        self.successResultOf(yoda.message("luke", "first"))
        self.clock.advance(5)
        self.successResultOf(hans.message("luke", "second"))
        self.successResultOf(yoda.message("luke", "third"))
        self.successResultOf(yoda.message("leia", "for leia"))
        luke = self.login("luke")
        self.assertEqual(
            self.clients["luke"].take(),
            [
                ("DirectMessage", "yoda", "first", START, True),
                ("DirectMessage", "hans", "second", START + 5, True),
                ("DirectMessage", "yoda", "third", START + 5, True),
            ],
        )
        # Forgotten once the turn that wrote them is over, not before.
        self.assertEqual(len(self.store.offline_messages("luke")), 3)
        self.clock.advance(0)
        self.assertEqual(self.store.offline_messages("luke"), [])
        self.assertEqual(len(self.store.offline_messages("leia")), 1)
        luke.end()
        self.login("luke")
        self.assertEqual(self.clients["luke"].take(), [])

    def test_message_to_self(self) -> None:
        (yoda,) = self.online("yoda")
        self.assertCommandError(
            "self", "Error. You cannot do that to yourself.", yoda.message, "yoda", "hi"
        )
        self.assertEqual(self.store.offline_messages("yoda"), [])

    def test_message_to_unknown_user(self) -> None:
        (yoda,) = self.online("yoda")
        self.assertCommandError(
            "invalid_user", "Error. Invalid user vader.", yoda.message, "vader", "hi"
        )
        self.assertEqual(self.store.offline_messages("vader"), [])


class BroadcastTests(StateTestCase):
    """Broadcasts reach every other online user."""

    def test_broadcast(self) -> None:
        yoda, _hans, _luke = self.online("yoda", "hans", "luke")
        self.clock.advance(7)
        reply = self.successResultOf(yoda.execute(Request("broadcast", {"message": "Hello all"})))
        self.assertEqual(summary(reply), ("BroadcastSent", 2, 0, 1, START + 7, (), 0))
        expected = [("BroadcastMessage", "yoda", "Hello all", START + 7, 1)]
        self.assertEqual(self.clients["hans"].take(), expected)
        self.assertEqual(self.clients["luke"].take(), expected)
        self.assertEqual(self.clients["yoda"].take(), [])

    def test_one_event_object_for_all(self) -> None:
        """Every recipient gets the same event object, so it is rendered once per format."""
        yoda, _hans, _luke = self.online("yoda", "hans", "luke")
        self.successResultOf(yoda.broadcast("x"))
        self.assertIs(self.clients["hans"].delivered[0], self.clients["luke"].delivered[0])

    def test_numbered_and_kept(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        self.successResultOf(yoda.broadcast("one"))
        self.clock.advance(2)
        reply = self.successResultOf(hans.broadcast("two"))
        self.assertEqual(summary(reply), ("BroadcastSent", 1, 0, 2, START + 2, (), 0))
        self.assertEqual(
            self.clients["yoda"].take(), [("BroadcastMessage", "hans", "two", START + 2, 2)]
        )
        self.assertEqual(
            [(e.channel, e.seq, e.sender, e.text) for e in self.store.history_after(["broadcast"], 0)],
            [("broadcast", 1, "yoda", "one"), ("broadcast", 2, "hans", "two")],
        )

    def test_alone(self) -> None:
        (yoda,) = self.online("yoda")
        self.assertEqual(self.replied(yoda.broadcast("anyone?")), ("BroadcastSent", 0, 0, 1, START, (), 0))


class BlockTests(StateTestCase):
    """yoda (A) blocks hans (B): every effect, and unblock undoing each."""

    def setUp(self) -> None:
        super().setUp()
        self.yoda, self.hans, self.luke = self.online("yoda", "hans", "luke")
        self.assertEqual(self.replied(self.yoda.block("hans")), ("BlockChanged", "hans", True))

    def test_block_recorded(self) -> None:
        self.assertTrue(self.state.has_blocked("yoda", "hans"))
        self.assertFalse(self.state.has_blocked("hans", "yoda"))
        self.assertEqual(list(self.store.blocks()), [("yoda", "hans")])
        self.assertEqual(self.clients["hans"].take(), [])

    def test_message_refused(self) -> None:
        self.assertCommandError(
            "blocked",
            "Your message could not be delivered as the recipient has blocked you.",
            self.hans.message,
            "yoda",
            "hi",
        )
        self.assertEqual(self.clients["yoda"].take(), [])

    def test_message_refused_and_not_stored_when_offline(self) -> None:
        self.yoda.end()
        error = self.commandError(self.hans.message, "yoda", "hi")
        self.assertEqual(error.code, "blocked")
        self.assertEqual(self.store.offline_messages("yoda"), [])
        self.login("yoda")
        self.assertEqual(self.clients["yoda"].take(), [])

    def test_broadcast_skips_blocker(self) -> None:
        self.online("leia")
        for name in ("yoda", "hans", "luke"):
            self.clients[name].take()
        reply = self.successResultOf(self.hans.broadcast("hello"))
        self.assertEqual(summary(reply), ("BroadcastSent", 2, 1, 1, START, (), 0))
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(
            self.clients["luke"].take(), [("BroadcastMessage", "hans", "hello", START, 1)]
        )
        self.assertEqual(
            self.clients["leia"].take(), [("BroadcastMessage", "hans", "hello", START, 1)]
        )

    def test_no_presence_of_blocker(self) -> None:
        self.yoda.end()
        self.assertEqual(self.clients["hans"].take(), [])
        self.assertEqual(self.clients["luke"].take(), [("Presence", "yoda", False)])
        self.login("yoda")
        self.assertEqual(self.clients["hans"].take(), [])
        self.assertEqual(self.clients["luke"].take(), [("Presence", "yoda", True)])

    def test_blocker_hidden_from_whoelse(self) -> None:
        self.assertEqual(self.hans.whoelse().users, ("luke",))
        self.assertEqual(self.luke.whoelse().users, ("hans", "yoda"))

    def test_blocker_hidden_from_whoelsesince(self) -> None:
        self.assertEqual(self.hans.whoelsesince(60).users, ("luke",))
        self.clock.advance(5)
        self.yoda.end()
        self.clock.advance(5)
        self.assertEqual(self.hans.whoelsesince(60).users, ("luke",))
        self.assertEqual(self.luke.whoelsesince(60).users, ("hans", "yoda"))

    def test_blocker_still_sees_blocked(self) -> None:
        self.assertEqual(self.yoda.whoelse().users, ("hans", "luke"))
        self.assertEqual(self.replied(self.yoda.message("hans", "hmm")), ("MessageSent", "hans", False, False, None))
        self.assertEqual(self.clients["hans"].take(), [("DirectMessage", "yoda", "hmm", START, False)])
        self.assertEqual(self.replied(self.yoda.broadcast("all")), ("BroadcastSent", 2, 0, 1, START, (), 0))
        self.assertEqual(self.clients["hans"].take(), [("BroadcastMessage", "yoda", "all", START, 1)])
        self.clock.advance(1)
        self.hans.end()
        self.assertEqual(self.clients["yoda"].take(), [("Presence", "hans", False)])
        self.assertEqual(self.yoda.whoelsesince(10).users, ("hans", "luke"))
        self.login("hans")
        self.assertEqual(self.clients["yoda"].take(), [("Presence", "hans", True)])

    def test_blocker_absent_from_users_offline(self) -> None:
        """To hans, yoda (who blocked him) must look offline, not vanish from both lists."""
        offline = self.hans.users("offline").users
        online = self.hans.users("online").users
        self.assertEqual(online, ("luke",))
        self.assertIn("yoda", offline)


    def test_blocked_user_typing_not_shown_to_blocker(self) -> None:
        self.hans.typing("on", None)
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(self.clients["luke"].take(), [("TypingNotice", "hans", True)])
        self.hans.typing("off", None)
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(self.clients["luke"].take(), [("TypingNotice", "hans", False)])

    def test_blocker_typing_not_shown_to_blocked(self) -> None:
        """Like presence: hans must not learn that yoda, who blocked him, is online and typing."""
        self.addCleanup(self.yoda.end)
        self.yoda.typing("on", None)
        self.assertEqual(self.clients["luke"].take(), [("TypingNotice", "yoda", True)])
        self.assertEqual(self.clients["hans"].take(), [])


    def test_block_of_offline_user(self) -> None:
        self.assertEqual(self.replied(self.yoda.block("leia")), ("BlockChanged", "leia", True))
        leia = self.login("leia")
        self.assertEqual(self.clients["leia"].take(), [])
        self.assertEqual(leia.whoelse().users, ("hans", "luke"))

    def test_unblock_restores_everything(self) -> None:
        reply = self.successResultOf(self.yoda.execute(Request("unblock", {"target": "hans"})))
        self.assertEqual(summary(reply), ("BlockChanged", "hans", False))
        self.assertFalse(self.state.has_blocked("yoda", "hans"))
        self.assertEqual(list(self.store.blocks()), [])
        # messages
        self.assertEqual(self.replied(self.hans.message("yoda", "hi")), ("MessageSent", "yoda", False, False, None))
        self.assertEqual(self.clients["yoda"].take(), [("DirectMessage", "hans", "hi", START, False)])
        # broadcasts
        self.assertEqual(self.replied(self.hans.broadcast("all")), ("BroadcastSent", 2, 0, 1, START, (), 0))
        self.assertEqual(self.clients["yoda"].take(), [("BroadcastMessage", "hans", "all", START, 1)])
        # whoelse
        self.assertEqual(self.hans.whoelse().users, ("luke", "yoda"))
        # presence, whoelsesince and offline storage
        self.yoda.end()
        self.assertEqual(self.clients["hans"].take(), [("Presence", "yoda", False)])
        self.assertEqual(self.hans.whoelsesince(60).users, ("luke", "yoda"))
        self.assertEqual(self.replied(self.hans.message("yoda", "later")), ("MessageSent", "yoda", True, False, None))
        self.login("yoda")
        self.assertEqual(self.clients["hans"].take(), [("Presence", "yoda", True)])
        self.assertEqual(
            self.clients["yoda"].take(), [("DirectMessage", "hans", "later", START, True)]
        )
        self.clock.advance(0)
        self.assertEqual(self.store.offline_messages("yoda"), [])

    def test_block_again_after_unblock(self) -> None:
        self.successResultOf(self.yoda.unblock("hans"))
        self.assertEqual(self.replied(self.yoda.block("hans")), ("BlockChanged", "hans", True))
        self.assertEqual(list(self.store.blocks()), [("yoda", "hans")])

    def test_block_errors(self) -> None:
        self.assertCommandError(
            "self", "Error. You cannot do that to yourself.", self.yoda.block, "yoda"
        )
        self.assertCommandError(
            "invalid_user", "Error. Invalid user vader.", self.yoda.block, "vader"
        )
        self.assertCommandError(
            "already_blocked", "Error. hans is already blocked.", self.yoda.block, "hans"
        )
        self.assertEqual(list(self.store.blocks()), [("yoda", "hans")])

    def test_unblock_errors(self) -> None:
        self.assertCommandError(
            "not_blocked", "Error. luke was not blocked.", self.yoda.unblock, "luke"
        )
        self.assertCommandError(
            "not_blocked", "Error. yoda was not blocked.", self.hans.unblock, "yoda"
        )
        self.assertCommandError(
            "self", "Error. You cannot do that to yourself.", self.yoda.unblock, "yoda"
        )
        self.assertCommandError(
            "invalid_user", "Error. Invalid user vader.", self.yoda.unblock, "vader"
        )
        self.assertTrue(self.state.has_blocked("yoda", "hans"))


class LoadTests(StateTestCase):
    """load() restores block lists and last-seen times from the store."""

    def test_restores_blocks_and_last_seen(self) -> None:
        self.store.add_block("yoda", "hans")
        self.store.record_seen("luke", START - 30)
        self.successResultOf(self.state.load())
        self.assertTrue(self.state.has_blocked("yoda", "hans"))
        yoda, hans = self.online("yoda", "hans")
        error = self.commandError(hans.message, "yoda", "hi")
        self.assertEqual(error.code, "blocked")
        self.assertEqual(hans.whoelse().users, ())
        self.assertEqual(yoda.whoelsesince(30).users, ("hans", "luke"))
        self.assertEqual(yoda.whoelsesince(29).users, ("hans",))

    def test_survives_restart(self) -> None:
        """What one ChatState wrote, a new one over the same store loads."""
        yoda, hans = self.online("yoda", "hans")
        self.successResultOf(yoda.block("luke"))
        self.successResultOf(yoda.block("leia"))
        self.successResultOf(yoda.unblock("leia"))
        hans.end()
        self.clock.advance(20)
        restarted = ChatState(
            LocalStore(self.store), self.accounts, self.clock, session_factory=Session
        )
        self.successResultOf(restarted.load())
        self.assertTrue(restarted.has_blocked("yoda", "luke"))
        self.assertFalse(restarted.has_blocked("yoda", "leia"))
        luke = restarted.attach("luke", RecordingClient())
        self.assertEqual(luke.whoelsesince(20).users, ("hans",))
        self.assertEqual(luke.whoelsesince(19).users, ())

    def test_load_replaces_blocks(self) -> None:
        self.successResultOf(self.state.block("yoda", "hans"))
        self.store.remove_block("yoda", "hans")
        self.store.add_block("luke", "leia")
        self.successResultOf(self.state.load())
        self.assertFalse(self.state.has_blocked("yoda", "hans"))
        self.assertTrue(self.state.has_blocked("luke", "leia"))


class ClusterStub:
    """What the chat state asks of its cluster node, with claims the test answers.

    No other node has users; fan-outs reach this node only.
    """

    def __init__(self) -> None:
        self.remote: dict[str, Any] = {}
        self.claims: list[tuple[str, defer.Deferred[None]]] = []
        self.released: list[str] = []

    def claim(self, member: Any) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.claims.append((member.username, d))
        return d

    def release(self, member: Any) -> None:
        self.released.append(member.username)

    def online(self, username: str) -> None:
        return None

    def deliver_remote(self, event: Any, sender: str, audience: Any, rule: Any, report: Any) -> Any:
        return defer.succeed(report)

    def __getattr__(self, name: str) -> Callable[..., None]:
        # changed, seen, block_changed, room_changed, announce_direct: nothing to tell.
        return lambda *args, **kwargs: None


class ClusterClaimTests(StateTestCase):
    """In a cluster a login is online only once its name is claimed (review finding: a refused
    claim must not have been shown anything, nor have wiped a guest's name)."""

    def setUp(self) -> None:
        super().setUp()
        self.cluster = ClusterStub()
        self.state.cluster = self.cluster

    def attach(self, username: str, guest: bool = False) -> defer.Deferred[Any]:
        self.clients[username] = RecordingClient()
        return self.state.attach(username, self.clients[username], guest)

    def test_not_online_until_claimed(self) -> None:
        hans_attached = self.attach("hans")
        self.cluster.claims[0][1].callback(None)
        hans = self.successResultOf(hans_attached)
        hans.begin()
        d = self.attach("yoda")
        self.assertNoResult(d)
        self.assertNotIn("yoda", self.state.sessions)
        self.assertRaises(AlreadyLoggedIn, self.state.attach, "yoda", RecordingClient())
        # A message to yoda meanwhile is kept for yoda, not shown to the login being claimed.
        reply = self.successResultOf(hans.message("yoda", "are you there"))
        self.assertEqual(summary(reply)[:3], ("MessageSent", "yoda", True))
        self.cluster.claims[1][1].errback(AlreadyLoggedIn("yoda"))
        self.failureResultOf(d, AlreadyLoggedIn)
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertNotIn("yoda", self.state.sessions)
        self.assertEqual(self.state.claiming, set())
        self.assertEqual([m.text for m in self.store.offline_messages("yoda")], ["are you there"])

    def test_a_guest_name_is_forgotten_only_once_claimed(self) -> None:
        self.store.add_offline("hans", "bob", "for the earlier bob", START)
        d = self.attach("bob", guest=True)
        self.cluster.claims[0][1].errback(AlreadyLoggedIn("bob"))  # bob is a guest on another node
        self.failureResultOf(d, AlreadyLoggedIn)
        self.assertEqual(len(self.store.offline_messages("bob")), 1, "the other node's guest keeps it")
        d = self.attach("bob", guest=True)
        self.cluster.claims[1][1].callback(None)
        self.successResultOf(d)
        self.assertEqual(self.store.offline_messages("bob"), [])
