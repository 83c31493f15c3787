"""The chat over a store that answers later: what waits for the store, and what does not.

:class:`ManualStore` is an :class:`~chatservice.store.interface.IChatStore`
whose calls stay pending until the test answers them (carried out on a
:class:`MemoryStore`) or refuses them, as a store on another machine
(PostgreSQL) would answer a while later or fail.  The tests check that a
direct message is acknowledged only once it is kept, that a broadcast goes
out only once the store has numbered it, that a client's later lines wait
behind a pending command while other clients go on, that a failing store
gives ``unavailable`` (and is logged), and that the service does not listen
before its state is loaded.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application import strports
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatservice import events
from chatservice.service import ChatService
from chatservice.store.interface import IChatStore
from chatservice.store.memory import MemoryStore
from tests.support import ChatHarness
from tests.test_state import START, ClusterStub, StateTestCase, summary

UNAVAILABLE = "Error. That is not possible right now; please try again."


class StoreDown(Exception):
    """What the manual store fails with when a test refuses a call."""


@implementer(IChatStore)
class ManualStore:
    """An :class:`IChatStore` whose calls wait until the test answers or refuses them.

    :param local: the store that carries out an answered call.
    :param at_once: names of the calls answered at once, as
        :class:`~chatservice.store.local.LocalStore` does.
    """

    def __init__(self, local: MemoryStore, at_once: tuple[str, ...] = ()) -> None:
        self.local = local
        self.at_once = set(at_once)
        self.pending: list[tuple[str, tuple[Any, ...], defer.Deferred[Any]]] = []

    def waiting(self) -> list[str]:
        """The names of the calls not answered yet, oldest first."""
        return [name for name, _args, _d in self.pending]

    def _take(self, name: str) -> tuple[tuple[Any, ...], defer.Deferred[Any]]:
        for index, (pending, args, d) in enumerate(self.pending):
            if pending == name:
                del self.pending[index]
                return args, d
        raise AssertionError(f"no {name} call is waiting (waiting: {self.waiting()})")

    def answer(self, name: str) -> None:
        """Carry out the oldest waiting call ``name`` and fire its Deferred with the result."""
        args, d = self._take(name)
        d.callback(getattr(self.local, name)(*args))

    def refuse(self, name: str) -> None:
        """Fail the oldest waiting call ``name`` with :class:`StoreDown` (nothing is changed)."""
        _args, d = self._take(name)
        d.errback(StoreDown(f"{name} failed: the database is down"))


def _waits(name: str) -> Callable[..., defer.Deferred[Any]]:
    def call(self: ManualStore, *args: Any) -> defer.Deferred[Any]:
        if name in self.at_once:
            return defer.maybeDeferred(getattr(self.local, name), *args)
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((name, args, d))
        return d

    return call


for _name in IChatStore.names():
    setattr(ManualStore, _name, _waits(_name))
del _name


def use_store(state: Any, store: ManualStore) -> None:
    """Make ``state`` (and its rooms) write through ``store`` from now on."""
    state.store = store
    state.rooms.store = store


class ManualStoreTests(unittest.TestCase):
    def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IChatStore, ManualStore(MemoryStore())))


class StateOverSlowStoreTests(StateTestCase):
    """The chat state and sessions over a store whose answers the test gives.

    Logins fetch kept messages at once (``offline_messages``, ``remove_offline``)
    unless a test says otherwise; every other call waits.
    """

    def setUp(self) -> None:
        super().setUp()
        self.slow = ManualStore(self.store, at_once=("offline_messages", "remove_offline"))
        use_store(self.state, self.slow)

    def test_direct_message_acknowledged_once_kept(self) -> None:
        (yoda,) = self.online("yoda")
        d = yoda.message("luke", "come back")
        # One call: the mailbox's bounds are checked where it is kept.
        self.assertEqual(self.slow.waiting(), ["keep_offline"])
        self.assertNoResult(d)
        self.assertEqual(self.store.offline_messages("luke"), [])
        self.slow.answer("keep_offline")
        self.assertEqual(
            summary(self.successResultOf(d)), ("MessageSent", "luke", True, False, None)
        )
        self.assertEqual([m.text for m in self.store.offline_messages("luke")], ["come back"])

    def test_direct_message_to_an_online_user_needs_no_store(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        reply = self.successResultOf(yoda.message("hans", "hi"))
        self.assertEqual(summary(reply), ("MessageSent", "hans", False, False, None))
        self.assertEqual(self.slow.waiting(), [])

    def test_direct_message_not_kept_is_an_error(self) -> None:
        (yoda,) = self.online("yoda")
        d = yoda.message("luke", "come back")
        self.slow.refuse("keep_offline")
        self.failureResultOf(d, StoreDown)

    def test_broadcast_goes_out_once_numbered(self) -> None:
        self.store.add_history("broadcast", "leia", "before", START - 10)
        yoda, _hans, _luke = self.online("yoda", "hans", "luke")
        self.clock.advance(5)
        d = yoda.broadcast("hello")
        self.assertEqual(self.slow.waiting(), ["add_history"])
        self.assertNoResult(d)
        self.assertEqual(self.clients["hans"].take(), [])
        self.assertEqual(self.clients["luke"].take(), [])
        self.slow.answer("add_history")
        expected = [("BroadcastMessage", "yoda", "hello", START + 5, 2)]
        self.assertEqual(self.clients["hans"].take(), expected)
        self.assertEqual(self.clients["luke"].take(), expected)
        self.assertEqual(
            summary(self.successResultOf(d)), ("BroadcastSent", 2, 0, 2, START + 5, (), 0)
        )

    def test_broadcast_not_kept_is_not_sent(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        d = yoda.broadcast("hello")
        self.slow.refuse("add_history")
        self.failureResultOf(d, StoreDown)
        self.assertEqual(self.clients["hans"].take(), [])

    def test_room_message_goes_out_once_numbered(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        d = yoda.room_create(("hans",))
        self.assertEqual(self.slow.waiting(), ["save_room"])
        self.assertEqual(self.clients["hans"].take(), [])
        self.slow.answer("save_room")
        self.assertEqual(
            summary(self.successResultOf(d)), ("RoomCreated", 1, ("hans", "yoda"), False)
        )
        self.assertEqual(self.clients["hans"].take(), [("RoomJoined", 1, "yoda", ("hans", "yoda"))])
        d = yoda.room_send(1, "in here")
        self.assertEqual(self.clients["hans"].take(), [])
        self.slow.answer("add_history")
        self.assertEqual(
            self.clients["hans"].take(), [("RoomMessage", 1, "yoda", "in here", START, 1)]
        )
        self.assertEqual(summary(self.successResultOf(d)), ("RoomPosted", 1, 1, START, 1, 0, 0))

    def test_block_in_effect_at_once_answered_once_stored(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        d = yoda.block("hans")
        self.assertTrue(self.state.has_blocked("yoda", "hans"))
        self.assertNoResult(d)
        self.slow.answer("add_block")
        self.assertEqual(summary(self.successResultOf(d)), ("BlockChanged", "hans", True))
        self.assertEqual(list(self.store.blocks()), [("yoda", "hans")])

    def test_block_not_stored_is_undone(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        d = yoda.block("hans")
        self.slow.refuse("add_block")
        self.failureResultOf(d, StoreDown)
        self.assertFalse(self.state.has_blocked("yoda", "hans"))
        self.assertEqual(list(self.store.blocks()), [])

    def test_unblock_not_stored_is_undone(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        self.slow.at_once.add("add_block")
        self.successResultOf(yoda.block("hans"))
        self.slow.at_once.discard("add_block")
        d = yoda.unblock("hans")
        self.assertFalse(self.state.has_blocked("yoda", "hans"))
        self.slow.refuse("remove_block")
        self.failureResultOf(d, StoreDown)
        self.assertTrue(self.state.has_blocked("yoda", "hans"))

    def test_read_waits_for_the_history(self) -> None:
        self.store.add_history("broadcast", "hans", "old news", START - 100)
        (yoda,) = self.online("yoda")
        d = yoda.read(START - 200)
        self.assertNoResult(d)
        self.slow.answer("history_page")
        reply = self.successResultOf(d)
        self.assertEqual(
            reply.entries, (("broadcast", 1, "hans", "old news", START - 100),)
        )

    def test_send_gathers_each_recipient_in_order(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        d = yoda.send(("luke", "hans", "vader", "leia"), "news")
        # hans is online: delivered at once; luke and leia wait for the store.
        self.assertEqual(self.slow.waiting(), ["keep_offline", "keep_offline"])
        self.assertNoResult(d)
        self.slow.refuse("keep_offline")  # luke's
        self.assertNoResult(d)
        self.slow.answer("keep_offline")  # leia's
        self.assertEqual(
            summary(self.successResultOf(d)),
            (
                "SendReport",
                ("hans",),
                ("leia",),
                (("luke", "not possible right now"), ("vader", "no such user")),
                (),
            ),
        )
        self.assertEqual(len(self.flushLoggedErrors(StoreDown)), 1)

    def test_last_seen_written_in_the_background(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        self.clock.advance(3)
        yoda.end()
        self.assertEqual(self.slow.waiting(), ["record_seen"])
        # Known at once, stored later; the service's stop waits for it.
        self.assertEqual(list(self.state.seen_since(START + 3)), ["hans", "yoda"])
        done = self.state.writes_done()
        self.assertNoResult(done)
        self.slow.answer("record_seen")
        self.successResultOf(done)
        self.assertEqual(list(self.store.last_seen()), [("yoda", START + 3)])

    def test_background_failure_is_logged(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.end()
        self.slow.refuse("record_seen")
        self.assertEqual(len(self.flushLoggedErrors(StoreDown)), 1)
        self.successResultOf(self.state.writes_done())


class KeptMessagesTests(StateTestCase):
    """Kept messages are fetched, delivered, then removed: once, and only to a session still online."""

    def setUp(self) -> None:
        super().setUp()
        self.store.add_offline("hans", "yoda", "first", START - 20)
        self.store.add_offline("luke", "yoda", "second", START - 10)
        self.slow = ManualStore(self.store)
        use_store(self.state, self.slow)

    def test_delivered_then_removed(self) -> None:
        self.login("yoda")
        self.assertEqual(self.slow.waiting(), ["offline_messages"])
        self.assertEqual(self.clients["yoda"].take(), [])
        self.slow.answer("offline_messages")
        self.assertEqual(
            self.clients["yoda"].take(),
            [
                ("DirectMessage", "hans", "first", START - 20, True),
                ("DirectMessage", "luke", "second", START - 10, True),
            ],
        )
        # Forgotten once the turn that wrote them is over, not before.
        self.assertEqual(self.slow.waiting(), [])
        self.clock.advance(0)
        self.assertEqual(self.slow.waiting(), ["remove_offline"])
        self.assertEqual(len(self.store.offline_messages("yoda")), 2)
        self.slow.answer("remove_offline")
        self.assertEqual(self.store.offline_messages("yoda"), [])

    def test_kept_until_the_turn_that_wrote_them_is_over(self) -> None:
        """A store that forgets at once is told only once the delivered messages are written."""
        self.slow.at_once.update({"offline_messages", "remove_offline"})
        yoda = self.login("yoda")
        self.assertEqual(len(self.clients["yoda"].take()), 2)
        self.assertEqual(len(self.store.offline_messages("yoda")), 2)
        d = yoda.deliver_kept()  # a catch-up meanwhile waits: nothing comes twice
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.store.offline_messages("yoda"), [])
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(self.clients["yoda"].take(), [])

    def test_one_fetch_at_a_time(self) -> None:
        """A catch-up during the login's fetch fetches after it, so nothing comes twice."""
        yoda = self.login("yoda")
        yoda.client_caught_up()
        self.assertEqual(self.slow.waiting(), ["offline_messages"])
        self.slow.answer("offline_messages")
        self.assertEqual(len(self.clients["yoda"].take()), 2)
        self.assertEqual(self.slow.waiting(), [])
        self.clock.advance(0)
        self.assertEqual(self.slow.waiting(), ["remove_offline"])
        self.slow.answer("remove_offline")
        self.assertEqual(self.slow.waiting(), ["offline_messages"])
        self.slow.answer("offline_messages")
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(self.slow.waiting(), [])

    def test_idle_answers_after_the_kept_messages(self) -> None:
        yoda = self.login("yoda")
        self.slow.answer("offline_messages")
        self.clock.advance(0)
        self.slow.answer("remove_offline")
        self.clients["yoda"].take()
        yoda.busy(None)
        self.store.add_offline("leia", "yoda", "third", START)
        d = yoda.idle()
        self.assertNoResult(d)
        self.slow.answer("offline_messages")
        self.assertEqual(
            self.clients["yoda"].take(), [("DirectMessage", "leia", "third", START, True)]
        )
        self.assertNoResult(d)
        self.clock.advance(0)
        self.slow.answer("remove_offline")
        self.assertEqual(self.successResultOf(d).kept, 1)

    def test_kept_while_logging_out(self) -> None:
        yoda = self.login("yoda")
        yoda.end()
        self.slow.answer("offline_messages")
        self.assertEqual(self.clients["yoda"].take(), [])
        self.assertEqual(self.slow.waiting(), ["record_seen"])
        self.assertEqual(len(self.store.offline_messages("yoda")), 2)

    def test_stored_after_the_login_fetch_is_fetched_again(self) -> None:
        (hans,) = self.online_now("hans")
        d = hans.message("leia", "late")
        leia = self.login("leia")
        self.slow.answer("offline_messages")  # before the message is kept
        self.assertEqual(self.clients["leia"].take(), [])
        self.slow.answer("keep_offline")
        self.successResultOf(d)
        self.assertEqual(self.slow.waiting(), ["offline_messages"])
        self.slow.answer("offline_messages")
        self.assertEqual(
            self.clients["leia"].take(), [("DirectMessage", "hans", "late", START, True)]
        )
        self.assertIs(self.state.sessions["leia"], leia)
        self.clock.advance(0)
        self.assertEqual(self.slow.waiting(), ["remove_offline"])

    def test_read_again_takes_the_store_s_blocks_and_rooms(self) -> None:
        """What changed elsewhere unannounced is taken; what changed during the read stays."""
        state = self.state
        # Here only (removed elsewhere meanwhile, unannounced).
        state.block_changed_elsewhere("luke", "yoda", True)
        version = self.store.save_room(3, frozenset({"hans", "yoda"}))
        state.room_changed_elsewhere(3, ["hans", "yoda"], version)
        self.store.leave_room(3, "hans")
        self.store.leave_room(3, "yoda")
        # In the store only (their announcements were lost).
        self.store.add_block("leia", "hans")
        self.store.save_room(7, frozenset({"leia", "luke"}))
        self.store.record_seen("luke", START + 50)
        d = state.reload_shared()
        self.assertEqual(self.slow.waiting(), ["blocks", "last_seen", "rooms"])
        # Changed while the store is read: newer than what the read finds.
        state.block_changed_elsewhere("vader", "luke", True)
        version = self.store.save_room(9, frozenset({"hans", "leia"}))
        state.room_changed_elsewhere(9, ["hans", "leia"], version)
        self.store.delete_room(9)  # (and gone again, its announcement not here yet)
        self.slow.answer("blocks")
        self.slow.answer("last_seen")
        self.slow.answer("rooms")
        self.assertEqual(self.slow.waiting(), ["last_room_version"])
        self.slow.answer("last_room_version")
        self.successResultOf(d)
        self.assertEqual(set(state.blocked_by("leia")), {"hans"})
        self.assertEqual(set(state.blocked_by("luke")), set())
        self.assertEqual(set(state.blocked_by("vader")), {"luke"})
        self.assertEqual(state.rooms.find(7).members, frozenset({"leia", "luke"}))
        self.assertIsNone(state.rooms.find(3))
        self.assertEqual(state.rooms.find(9).members, frozenset({"hans", "leia"}))
        self.assertIn("luke", list(state.seen_since(START + 50)))

    def test_read_again_that_fails_is_a_failure_and_stops_tracking(self) -> None:
        d = self.state.reload_shared()
        self.slow.refuse("blocks")
        self.slow.answer("last_seen")
        self.slow.answer("rooms")
        self.failureResultOf(d, StoreDown)
        self.slow.answer("last_room_version")
        self.assertIsNone(self.state._touched_blocks)
        self.assertIsNone(self.state.rooms._touched)

    def online_now(self, *usernames: str) -> list[Any]:
        """Log users in whose logins find nothing kept."""
        sessions = []
        for username in usernames:
            sessions.append(self.login(username))
            self.slow.answer("offline_messages")
            self.clients[username].take()
        return sessions


class ConnectionOverSlowStoreTests(unittest.TestCase):
    """Whole connections: a client's lines wait behind its pending command; others go on."""

    def setUp(self) -> None:
        self.harness = ChatHarness()
        self.yoda, self.hans, self.luke = self.harness.online("yoda", "hans", "luke")
        self.slow = ManualStore(self.harness.store, at_once=("offline_messages",))
        use_store(self.harness.state, self.slow)
        self.addCleanup(self.close)

    def close(self) -> None:
        self.harness.close_all(self.yoda, self.hans, self.luke)
        for name in self.slow.waiting():
            self.slow.answer(name)

    def test_later_lines_wait_in_order(self) -> None:
        self.yoda.send("broadcast hello")
        self.yoda.send("whoelse")
        self.yoda.send("message hans psst")
        self.assertEqual(self.yoda.lines(), [])
        self.assertEqual(self.hans.lines(), [])
        self.assertEqual(self.slow.waiting(), ["add_history"])
        # Another client is not held up.
        self.hans.send("whoelse")
        self.assertEqual(self.hans.lines(), ["luke", "yoda"])
        self.slow.answer("add_history")
        self.assertEqual(self.hans.lines(), ["[broadcast] yoda: hello", "yoda: psst"])
        lines = self.yoda.lines()
        self.assertTrue(lines[0].startswith("Broadcast message, #1 broadcast at "), lines)
        self.assertEqual(lines[1:], ["hans", "luke", "Message delivered to hans."])

    def test_fired_deferred_answered_without_pausing(self) -> None:
        self.slow.at_once.add("add_history")
        paused: list[str] = []
        transport = self.yoda.transport
        self.patch(transport, "pauseProducing", lambda: paused.append("pause"))
        self.yoda.send("broadcast hello")
        self.assertEqual(paused, [])
        self.assertEqual(self.hans.lines(), ["[broadcast] yoda: hello"])

    def test_pending_command_pauses_reading(self) -> None:
        self.yoda.send("broadcast hello")
        self.assertEqual(self.yoda.transport.producerState, "paused")
        self.slow.answer("add_history")
        self.assertEqual(self.yoda.transport.producerState, "producing")

    def test_failing_write_is_unavailable_and_logged(self) -> None:
        self.yoda.send("message obiwan hi")
        self.slow.refuse("keep_offline")
        self.assertEqual(self.yoda.lines(), [UNAVAILABLE])
        self.assertEqual(len(self.flushLoggedErrors(StoreDown)), 1)
        # The connection goes on.
        self.yoda.send("whoelse")
        self.assertEqual(self.yoda.lines(), ["hans", "luke"])

    def test_failing_write_over_json(self) -> None:
        harness = self.harness
        leia = harness.connect()
        self.slow.at_once.add("offline_messages")
        leia.login_json("leia")
        self.addCleanup(leia.drop)
        leia.send_json({"type": "broadcast", "message": "hi", "id": 7})
        self.slow.refuse("add_history")
        self.assertEqual(
            leia.json(),
            [{"type": "error", "code": "unavailable", "message": UNAVAILABLE, "id": 7}],
        )
        self.assertEqual(len(self.flushLoggedErrors(StoreDown)), 1)

    def test_command_error_after_the_store_is_the_same_error(self) -> None:
        self.harness.state.max_offline = 1
        self.harness.store.add_offline("hans", "obiwan", "first", START)
        self.yoda.send("message obiwan second")
        self.slow.answer("keep_offline")
        self.assertEqual(
            self.yoda.lines(),
            [
                "Error. obiwan has 1 messages waiting already; yours was not kept."
                " Try again later."
            ],
        )
        self.assertEqual(self.flushLoggedErrors(), [])


class ServiceStartTests(unittest.TestCase):
    """The chat service serves only once its store is open and its state loaded.

    Its listeners bind as usual (a privileged port still works), and their
    connections are refused (``starting``) until then.
    """

    def setUp(self) -> None:
        self.harness = ChatHarness()
        self.slow = ManualStore(self.harness.store)
        use_store(self.harness.state, self.slow)
        self.reactor = MemoryReactorClock()
        self.reactor.running = True
        self.service = ChatService(
            self.harness.state,
            self.harness.factory,
            [self.harness.lockout, self.harness.address_lockout, self.harness.slowdown],
            NoLogs(),
            self.harness.directory / "data",
            reactor=self.reactor,
        )
        strports.service("tcp:4119", self.harness.factory, reactor=self.reactor).setServiceParent(
            self.service
        )
        self.addCleanup(self.harness.close_all)

    def test_serves_once_loaded(self) -> None:
        self.harness.store.add_block("yoda", "hans")
        self.service.privilegedStartService()
        self.assertEqual([server[0] for server in self.reactor.tcpServers], [4119], "bound as root would")
        self.service.startService()
        self.assertTrue(self.service.running)
        for call in ("open", "blocks", "last_seen", "rooms", "highest_room_id", "operators", "bans"):
            self.assertFalse(self.service.serving)
            early = self.harness.connect()  # (the harness discards the first output)
            self.assertTrue(early.closed, "refused while loading")
            early.drop()
            self.slow.answer(call)
        self.assertTrue(self.service.serving)
        (yoda,) = self.harness.online("yoda")
        self.assertIn("yoda", self.harness.state.sessions)
        yoda.drop()
        self.slow.answer("offline_messages")  # the login's look for kept messages
        self.slow.answer("record_seen")  # the logout's last-seen time
        self.assertTrue(self.harness.state.has_blocked("yoda", "hans"))
        d = self.service.stopService()
        self.slow.answer("close")
        self.successResultOf(d)
        self.assertFalse(self.service.serving)

    def test_failed_load_stops_the_reactor_without_serving(self) -> None:
        self.service.startService()
        self.slow.answer("open")
        self.slow.refuse("blocks")
        self.assertFalse(self.service.serving)
        refused = self.harness.connect()
        self.assertTrue(refused.closed)
        refused.drop()
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(len(self.flushLoggedErrors(StoreDown)), 1)
        d = self.service.stopService()
        self.slow.answer("close")
        self.successResultOf(d)

    def test_stopped_while_loading(self) -> None:
        self.service.startService()
        d = self.service.stopService()
        self.slow.answer("open")
        self.slow.answer("close")
        self.successResultOf(d)
        for call in ("blocks", "last_seen", "rooms", "highest_room_id", "operators", "bans"):
            self.slow.answer(call)
        self.assertFalse(self.service.serving)
        self.assertFalse(self.harness.factory.registry.ready)


class LocalStoreServiceTests(unittest.TestCase):
    """With a local store, a store that cannot be opened fails the start itself, as it always did."""

    def test_open_failure_raises(self) -> None:
        harness = ChatHarness()
        self.addCleanup(harness.close_all)

        def broken() -> None:
            raise StoreDown("cannot open")

        self.patch(harness.store, "open", broken)
        reactor = MemoryReactorClock()
        service = harness.chat.service
        strports.service("tcp:4119", harness.factory, reactor=reactor).setServiceParent(service)
        self.assertRaises(StoreDown, service.startService)
        self.assertFalse(service.running)
        self.assertEqual(reactor.tcpServers, [])


class NoLogs:
    """The activity logs the service starts and flushes: nothing to write here."""

    def users_changed(self) -> None:
        """Nothing to write."""

    def flush(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class DirectFromAnotherNodeTests(StateTestCase):
    """A direct message another node kept and announced (``direct_here``), against a fetch of kept messages."""

    def setUp(self) -> None:
        super().setUp()
        self.slow = ManualStore(self.store, at_once=("offline_messages", "remove_offline"))
        use_store(self.state, self.slow)

    def test_shown_at_once_and_once_when_announced_during_a_fetch(self) -> None:
        (hans,) = self.online("hans")
        self.clients["hans"].take()
        kept = self.store.add_offline("yoda", "hans", "across nodes", START)
        self.slow.at_once.discard("offline_messages")
        fetch = hans.deliver_kept()
        self.assertEqual(self.slow.waiting(), ["offline_messages"])
        self.state.direct_here("hans", kept.message_id, events.DirectMessage("yoda", "across nodes", START))
        # Shown at once, without waiting for the store.
        self.assertEqual(self.clients["hans"].take(), [("DirectMessage", "yoda", "across nodes", START, False)])
        self.slow.answer("offline_messages")  # the fetch finds it too: not shown again
        self.assertEqual(self.clients["hans"].take(), [])
        # Forgotten once the turn that wrote it is over, not before (by
        # neither the fetch nor the live path).
        self.assertEqual(self.slow.waiting(), [])
        self.assertNoResult(fetch)
        self.assertEqual(len(self.store.offline_messages("hans")), 1)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(fetch), 0)
        self.slow.answer("take_offline")
        self.assertEqual(self.store.offline_messages("hans"), [])

    def test_not_shown_again_when_a_fetch_showed_it_first(self) -> None:
        (hans,) = self.online("hans")
        self.clients["hans"].take()
        self.state.cluster = ClusterStub()
        kept = self.store.add_offline("yoda", "hans", "across nodes", START)
        fetch = hans.deliver_kept()
        self.assertEqual(self.clients["hans"].take(), [("DirectMessage", "yoda", "across nodes", START, True)])
        self.state.direct_here("hans", kept.message_id, events.DirectMessage("yoda", "across nodes", START))
        self.assertEqual(self.clients["hans"].take(), [])
        self.assertEqual(self.slow.waiting(), [])
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(fetch), 1)
        self.assertEqual(self.store.offline_messages("hans"), [])
        self.assertEqual(self.slow.waiting(), [])

    def test_a_busy_user_keeps_it(self) -> None:
        (hans,) = self.online("hans")
        self.clients["hans"].take()
        hans.busy("away")
        self.clients["hans"].take()
        kept = self.store.add_offline("yoda", "hans", "across nodes", START)
        self.state.direct_here("hans", kept.message_id, events.DirectMessage("yoda", "across nodes", START))
        self.assertEqual(self.clients["hans"].take(), [])
        self.assertEqual(len(self.store.offline_messages("hans")), 1)
