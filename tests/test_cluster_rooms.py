"""Room announcements across cluster nodes, through a real ``redis-server``: the newest wins.

Three :class:`~chatservice.cluster.node.ClusterNode` objects on one Redis,
each with its own chat state over one shared store (as three nodes on one
PostgreSQL database).  Two members leave one room on nodes ``a`` and ``b``;
the store takes ``a``'s leave first, but ``a`` hears the store's answer
late (as a node on a slower connection would), so its announcement
reaches node ``c`` after ``b``'s.  Each announcement carries the room's
version, and ``c`` keeps the newer one.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import defer, reactor

from chatservice.cluster.link import RedisLink
from chatservice.cluster.node import ALL
from chatservice.cluster.outbox import messages_in
from chatservice.store.interface import StoredRoom
from tests.cluster_support import NodesTestCase
from tests.test_async_store import use_store
from tests.test_redis_link import wait_until
from tests.test_state import RecordingClient

EVERYONE = frozenset({"yoda", "hans", "luke", "leia"})


class LateAnswers:
    """A store whose answers to the calls named in :attr:`held` reach the caller only on :meth:`release`.

    The call itself is made at once (the store has done it); only the
    caller hears of it later, as when a node's connection to the database
    is slow.

    :param store: the store that does the work.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.held: set[str] = set()
        self._waiting: list[tuple[Any, defer.Deferred[Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., defer.Deferred[Any]]:
        call = getattr(self.store, name)
        if name not in self.held:
            return call

        def late(*args: Any) -> defer.Deferred[Any]:
            answer: defer.Deferred[Any] = defer.Deferred()
            call(*args).addCallback(lambda result: self._waiting.append((result, answer)))
            return answer

        return late

    def release(self) -> None:
        """Give the callers the answers held back, in order."""
        waiting, self._waiting = self._waiting, []
        for result, answer in waiting:
            answer.callback(result)


class ClusterRoomsTests(NodesTestCase):
    """Nodes ``a``, ``b`` and ``c`` on one store and one Redis, and a listener on ``chat:all``;
    node ``a`` hears the store's answers to ``leave_room`` when the test says."""

    def setUp(self) -> None:
        super().setUp()
        for name in ("a", "b", "c"):
            self.add_node(name)
        self.states = {name: node.state for name, node in self.nodes.items()}
        self.late = LateAnswers(self.store)
        use_store(self.states["a"], self.late)
        self.published: list[dict[str, Any]] = []
        self.listener = RedisLink(
            self.redis.url, reactor, [ALL], lambda _, text: self.published.extend(messages_in(text))
        )

    async def started(self, members: frozenset[str] = EVERYONE) -> None:
        """Room 5 of ``members`` in the store; the states loaded, everyone subscribed."""
        await self.store.save_room(5, members)
        await super().started({name: "secret" for name in ("yoda", "hans", "luke", "leia")})
        self.listener.startService()
        self.addCleanup(self.listener.stopService)
        await wait_until(lambda: self.listener.connected)

    async def session(self, node: str, username: str) -> Any:
        """``username`` logged in on ``node``."""
        session = await self.states[node].attach(username, RecordingClient())
        session.begin()
        return session

    def room_announcements(self) -> list[tuple[str, list[str] | None, int]]:
        """``(node, members, version)`` of the room announcements published so far."""
        return [(m["n"], m["m"], m["v"]) for m in self.published if m["k"] == "room"]

    async def announced_after(self, room_id: int, members: frozenset[str]) -> None:
        """Announce room ``room_id`` from the listener, and wait until node ``c`` holds it:
        ``c`` has then taken every message published before."""
        version = await self.store.save_room(room_id, members)
        await self.listener.publish(
            ALL, json.dumps({"k": "room", "id": room_id, "m": sorted(members), "v": version, "n": "t"})
        )
        await wait_until(lambda: self.states["c"].rooms.find(room_id) is not None)

    async def test_an_older_announcement_arriving_last_is_not_taken(self) -> None:
        await self.started()
        hans, luke = await self.session("a", "hans"), await self.session("b", "luke")
        self.late.held.add("leave_room")
        left_on_a = hans.room_leave(5)  # in the store first; a hears it late
        await luke.room_leave(5)  # in the store second: the room as it is now
        await wait_until(lambda: len(self.room_announcements()) == 1)
        self.late.release()
        await left_on_a
        await wait_until(lambda: len(self.room_announcements()) == 2)
        (b, b_members, newer), (a, a_members, older) = self.room_announcements()
        self.assertEqual((b, b_members), ("b", ["leia", "yoda"]))
        self.assertEqual((a, a_members), ("a", ["leia", "luke", "yoda"]))
        self.assertLess(older, newer)
        await self.announced_after(6, frozenset({"yoda", "leia"}))
        # c took b's announcement, then a's older one reached it: it keeps b's.
        room = self.states["c"].rooms.find(5)
        self.assertEqual((room.members, room.version), (frozenset({"yoda", "leia"}), newer))
        self.assertEqual([r.room_id for r in self.states["c"].rooms.of("luke")], [])
        # a took b's announcement before its own answer: it holds the store's room too.
        self.assertEqual(self.states["a"].rooms.find(5).members, frozenset({"yoda", "leia"}))
        self.assertEqual(self.states["b"].rooms.find(5).members, frozenset({"yoda", "leia"}))
        self.assertEqual(
            list(await self.store.rooms()),
            [(5, frozenset({"yoda", "leia"}), newer), (6, frozenset({"yoda", "leia"}), newer + 1)],
        )

    async def test_a_removal_is_not_undone_by_an_older_announcement(self) -> None:
        """The last two members leave at once: the older of the two answers, arriving
        last, does not bring the removed room back; a room saved again under its
        number later is newer than the removal."""
        await self.started(frozenset({"yoda", "hans"}))
        hans, yoda = await self.session("a", "hans"), await self.session("b", "yoda")
        self.late.held.add("leave_room")
        left_on_a = hans.room_leave(5)
        removed = await yoda.room_leave(5)
        self.assertTrue(removed.removed)
        await wait_until(lambda: len(self.room_announcements()) == 1)
        self.late.release()
        await left_on_a
        await wait_until(lambda: len(self.room_announcements()) == 2)
        (_, none, removal), (_, members, older) = self.room_announcements()
        self.assertEqual((none, members), (None, ["yoda"]))
        self.assertLess(older, removal)
        await self.announced_after(6, frozenset({"yoda", "leia"}))
        for state in self.states.values():
            self.assertIsNone(state.rooms.find(5))
            self.assertEqual([r.room_id for r in state.rooms.of("hans")], [])
        # Saved again under its number: newer than the removal, taken.
        version = await self.store.save_room(5, frozenset({"luke", "leia"}))
        self.states["b"].room_changed(StoredRoom(5, frozenset({"luke", "leia"}), version))
        await wait_until(lambda: self.states["c"].rooms.find(5) is not None)
        self.assertEqual(self.states["c"].rooms.find(5).members, frozenset({"luke", "leia"}))
