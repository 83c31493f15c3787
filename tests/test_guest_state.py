"""A guest's state ends with its session (issue 15, item 3).

A guest name is no account: the next guest to take it is someone else.  So
when a guest's session ends, everything kept about that name goes: the
direct messages kept for it (dropped, not delivered to the next guest), the
blocks it made and the blocks of it, its room memberships (the other members
are told it left) and its last-seen time.  Messages it sent to others, and
its broadcasts and room messages, stay: they belong to their readers.  A
guest logging in also starts from nothing, whatever a crashed server (or a
removed account of that name) left behind.
"""

from __future__ import annotations

from chatservice.store.memory import MemoryStore
from tests.support import Connection
from tests.test_async_store import ManualStore, use_store
from tests.test_protocol import HarnessTestCase
from tests.test_state import START, RecordingClient, StateTestCase

ROOM_HISTORY = "#1 room 1, bob: only members read this"


class GuestHarnessTestCase(HarnessTestCase):
    harness_options = {"allow_guests": True}

    def guest(self, name: str) -> Connection:
        connection = self.connect()
        connection.send(f"guest {name}")
        self.assertIn(f"Welcome to chatservice, {name} (guest)!", connection.output())
        return connection

    def lines_of(self, connection: Connection, line: str) -> list[str]:
        connection.send(line)
        return connection.lines()

    def store(self) -> MemoryStore:
        return self.harness.store


class NextGuestTests(GuestHarnessTestCase):
    def leave_a_trail(self) -> None:
        """Guest bob is kept a message, joins a room with history, blocks and is blocked; then leaves."""
        yoda, hans, luke = self.online("yoda", "hans", "luke")
        bob = self.guest("bob")
        for connection in (yoda, hans, luke):
            connection.output()
        bob.send("room create yoda luke")
        bob.send("room send 1 only members read this")
        bob.send("block hans")
        yoda.send("block bob")
        bob.send("busy")
        luke.send("message bob kept while busy")
        bob.send("hide")
        bob.output()
        yoda.output()
        luke.output()
        bob.send("logout")
        self.assertTrue(bob.closed)
        bob.drop()
        self.assertEqual(luke.lines(), ["bob left room 1."])
        self.assertEqual(yoda.lines(), ["bob left room 1."])  # bob was hidden: no logout notice
        self.yoda, self.hans, self.luke = yoda, hans, luke

    def test_next_guest_of_the_name_starts_afresh(self) -> None:
        self.leave_a_trail()
        bob = self.guest("bob")
        self.assertEqual(bob.lines(), [])  # no kept message
        self.assertEqual(self.lines_of(bob, "rooms"), ["You are in no rooms."])
        history = self.lines_of(bob, "read 1 Jan 2000 00:00:00")
        self.assertNotIn(ROOM_HISTORY, " ".join(history))
        self.hans.output()
        bob.send("message hans not blocked")
        self.assertEqual(self.hans.lines(), ["bob: not blocked"])
        self.yoda.output()
        bob.send("message yoda hello")
        self.assertEqual(self.yoda.lines(), ["bob: hello"])

    def test_the_store_keeps_nothing_of_the_guest(self) -> None:
        self.leave_a_trail()
        store = self.store()
        self.assertEqual(store.offline_messages("bob"), [])
        self.assertEqual([pair for pair in store.blocks() if "bob" in pair], [])
        self.assertNotIn("bob", dict(store.last_seen()))
        self.assertEqual(store.rooms(), [(1, frozenset({"yoda", "luke"}), 2)])
        # What is not the guest's stays: its room message, for the members.
        self.assertEqual(self.lines_of(self.luke, "read 1 Jan 2000 00:00:00")[0][:35], ROOM_HISTORY[:35])
        self.assertEqual(self.lines_of(self.yoda, "whoelsesince 1000"), ["hans", "luke"])

    def test_a_room_of_two_keeps_its_other_member(self) -> None:
        (yoda,) = self.online("yoda")
        bob = self.guest("bob")
        bob.send("room create yoda")
        yoda.output()
        bob.drop()
        self.assertEqual(yoda.lines(), ["bob logged out", "bob left room 1."])
        self.assertEqual(self.lines_of(yoda, "rooms"), ["Room 1: yoda"])

    def test_messages_from_the_guest_stay_with_their_reader(self) -> None:
        bob = self.guest("bob")
        bob.send("message obiwan while you were away")
        bob.drop()
        kept = self.store().offline_messages("obiwan")
        self.assertEqual([(m.sender, m.text) for m in kept], [("bob", "while you were away")])

    def test_accounts_keep_their_state(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("block hans")
        hans.send("logout")
        hans.drop()
        yoda.send("message hans kept")
        self.assertEqual([pair for pair in self.store().blocks()], [("yoda", "hans")])
        self.assertEqual(len(self.store().offline_messages("hans")), 1)


class LeftoversTests(GuestHarnessTestCase):
    """What a crashed server (or a removed account) left under a name is not a new guest's."""

    def test_guest_login_clears_leftovers(self) -> None:
        store = self.store()
        store.add_offline("yoda", "bob", "left over", START)
        store.add_block("bob", "hans")
        store.add_block("yoda", "bob")
        store.record_seen("bob", START)
        store.save_room(7, frozenset({"bob", "yoda"}))
        self.harness.state.load()
        (yoda, hans) = self.online("yoda", "hans")
        bob = self.guest("bob")
        self.assertEqual(bob.lines(), [])
        self.assertEqual(self.lines_of(bob, "rooms"), ["You are in no rooms."])
        self.assertEqual(yoda.lines(), ["bob left room 7.", "bob logged in"])
        self.assertEqual(hans.lines(), ["bob logged in"])
        self.assertEqual(store.blocks(), [])
        self.assertEqual(store.offline_messages("bob"), [])
        self.assertEqual(dict(store.last_seen()).get("bob"), None)


class SlowStoreTests(StateTestCase):
    """With a store that answers later, a message being kept for a guest who leaves is dropped."""

    def setUp(self) -> None:
        super().setUp()
        self.slow = ManualStore(self.store, at_once=("offline_messages", "remove_offline", "forget_user"))
        use_store(self.state, self.slow)

    def test_message_to_a_guest_who_left_meanwhile(self) -> None:
        (yoda,) = self.online("yoda")
        client = self.clients["bob"] = RecordingClient()
        bob = self.state.attach("bob", client, guest=True)
        bob.begin()
        bob.busy(None)
        d = yoda.message("bob", "for the old bob")
        bob.end()
        new_bob = self.state.attach("bob", client, guest=True)
        new_bob.begin()
        self.slow.answer("keep_offline")
        self.assertEqual(self.slow.waiting(), [])
        error = self.failureResultOf(d).value
        self.assertEqual(error.code, "invalid_user")
        self.assertEqual(self.store.offline_messages("bob"), [])
        self.assertNotIn("for the old bob", repr(client.take()))
        new_bob.end()
