"""chatservice-admin's actions (:class:`~chatservice.admin.actions.AdminActions`).

- :class:`StoreActionsBehaviour`: the actions with no server running, on
  each store (memory, SQLite, PostgreSQL), as the tool runs them itself;
- :class:`LiveActionsTests`: the actions inside a server (a
  :class:`~tests.support.ChatHarness` on a Clock, with text connections):
  what its memory and its users see at once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet import task
from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.admin.actions import PURGE_BATCH, AdminActions, AdminError, LiveServer
from chatservice.auth.accounts import hash_and_derive
from chatservice.auth.directory import StoredAccounts
from chatservice.auth.passwords import verify_password
from chatservice.moderation import Mute
from chatservice.state import REMOVED
from chatservice.store.interface import Ban
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from chatservice.store.sqlite import SQLiteStore
from tests import pg_support
from tests.support import ChatHarness
from tests.test_store_behaviour import OpenedStore

T = 1_700_000_000.0

_HASHES: dict[str, dict[str, str]] = {}


def hashed(password: str) -> dict[str, str]:
    """The ``secret`` and ``scram`` fields of ``password``, as the tool sends them (cached: scrypt is slow)."""
    if password not in _HASHES:
        secret, keys = hash_and_derive(password)
        _HASHES[password] = {"secret": secret, "scram": keys.format()}
    return _HASHES[password]


class StoreActionsBehaviour(OpenedStore):
    """The actions on a store no server runs on; mixed into a TestCase with :meth:`make_store`."""

    failureResultOf: Callable[..., Any]

    async def setUp(self) -> None:
        await super().setUp()
        self.clock = Clock()
        self.clock.advance(T + 1000)
        self.actions = AdminActions(StoredAccounts(self.store, self.clock), self.clock)

    async def act(self, **request: Any) -> Any:
        return await self.actions.run(request)

    async def refused(self, **request: Any) -> AdminError:
        try:
            await self.actions.run(request)
        except AdminError as e:
            return e
        raise AssertionError(f"{request} was not refused")

    async def test_add_list_passwd(self) -> None:
        self.assertEqual(await self.act(action="list"), [])
        self.assertEqual(
            await self.act(action="add", username="rey", **hashed("scavenger")),
            {"user": "rey", "action": "added"},
        )
        await self.store.record_seen("rey", T)
        self.assertEqual(
            await self.act(action="list"),
            [{"user": "rey", "operator": False, "last_seen": T, "last_seen_iso": "2023-11-14T22:13:20+00:00"}],
        )
        self.assertEqual(
            await self.act(action="passwd", username="rey", **hashed("jakku-one")),
            {"user": "rey", "action": "changed"},
        )
        secret, scram = await self.store.account("rey")
        self.assertTrue(verify_password("jakku-one", secret))
        self.assertEqual(scram, hashed("jakku-one")["scram"])

    async def test_add_refusals(self) -> None:
        await self.act(action="add", username="yoda", **hashed("wise-one"))
        for name, code in (("yoda", "taken"), ("Yoda", "taken"), ("y\u043eda", "taken"),
                           ("#hash", "invalid_username"), ("admin", "invalid_username"),
                           (7, "invalid_request")):
            self.assertEqual((await self.refused(action="add", username=name, **hashed("pw-pw"))).code, code, name)
        plain = {"secret": "plain", "scram": hashed("pw-pw")["scram"]}
        self.assertEqual((await self.refused(action="add", username="rey", **plain)).code, "invalid_secret")
        bad_keys = {"secret": hashed("pw-pw")["secret"], "scram": "nonsense"}
        self.assertEqual((await self.refused(action="add", username="rey", **bad_keys)).code, "invalid_secret")
        self.assertEqual(await self.store.usernames(), ["yoda"])

    async def test_passwd_unknown_or_created(self) -> None:
        error = await self.refused(action="passwd", username="rey", **hashed("pw-pw"))
        self.assertEqual((error.code, error.message), ("unknown_user", "There is no account rey."))
        self.assertEqual(
            await self.act(action="passwd", username="rey", create=True, **hashed("pw-pw")),
            {"user": "rey", "action": "added"},
        )

    async def _bob(self) -> None:
        await self.act(action="add", username="bob", **hashed("bobs-pw"))
        await self.act(action="add", username="yoda", **hashed("wise-one"))
        await self.store.add_block("bob", "yoda")
        await self.store.add_block("yoda", "bob")
        await self.store.record_seen("bob", T)
        await self.store.add_offline("yoda", "bob", "for bob", T)
        await self.store.add_offline("bob", "yoda", "from bob", T + 1)
        await self.store.save_room(1, frozenset({"bob", "yoda"}))
        await self.store.add_history("room:1", "bob", "in the room", T + 2)
        await self.store.add_history("broadcast", "yoda", "hello all", T + 3)

    async def test_export(self) -> None:
        await self._bob()
        await self.act(action="grant", username="bob")
        await self.store.add_ban(Ban("user", "bob", "yoda", T, None, "spam"))
        await self.store.add_ban(Ban("address", "192.0.2.7", "bob", T + 1))
        await self.store.add_ban(Ban("user", "bobby", "yoda", T + 2))
        exported = await self.act(action="export", username="bob")
        self.assertEqual(exported, {
            "user": "bob",
            "exported_at": "2023-11-14T22:30:00+00:00",
            "account": {"password": "scrypt hash (kept, not exported)", "scram_keys": True, "operator": True},
            "blocking": ["yoda"],
            "blocked_by": ["yoda"],
            "rooms": [1],
            "last_seen": "2023-11-14T22:13:20+00:00",
            "messages_to": [{"id": 1, "from": "yoda", "text": "for bob", "sent_at": "2023-11-14T22:13:20+00:00"}],
            "messages_from": [{"id": 2, "to": "yoda", "text": "from bob", "sent_at": "2023-11-14T22:13:21+00:00"}],
            "history": [{"channel": "room:1", "seq": 1, "text": "in the room", "sent_at": "2023-11-14T22:13:22+00:00"}],
            "bans": [{"id": 1, "kind": "user", "target": "bob", "set_by": "yoda", "set_at": "2023-11-14T22:13:20+00:00",
                      "until": None, "reason": "spam"}],
            "bans_set": [{"id": 2, "kind": "address", "target": "192.0.2.7", "set_by": "bob",
                          "set_at": "2023-11-14T22:13:21+00:00", "until": None, "reason": ""}],
        })
        self.assertFalse(any("$scrypt$" in str(v) for v in exported.values()))
        self.assertEqual((await self.refused(action="export", username="nobody")).code, "unknown_user")

    async def test_remove_keeps_what_they_sent(self) -> None:
        await self._bob()
        self.assertEqual(await self.act(action="remove", username="bob"), {"user": "bob", "action": "removed"})
        self.assertEqual(await self.store.usernames(), ["yoda"])
        self.assertEqual(list(await self.store.blocks()), [])
        self.assertEqual([m.text for m in await self.store.offline_messages("yoda")], ["from bob"])
        self.assertEqual(list(await self.store.rooms()), [(1, frozenset({"yoda"}), 2)])
        self.assertEqual(len(await self.store.history_after(["room:1", "broadcast"], 0)), 2)
        self.assertEqual((await self.refused(action="remove", username="bob")).code, "unknown_user")

    async def test_delete_takes_what_they_sent(self) -> None:
        await self._bob()
        self.assertEqual(await self.act(action="delete", username="bob"), {"user": "bob", "action": "deleted"})
        self.assertEqual(await self.store.offline_messages("yoda"), [])
        self.assertEqual([e.text for e in await self.store.history_after(["room:1", "broadcast"], 0)], ["hello all"])
        self.assertEqual((await self.refused(action="export", username="bob")).code, "unknown_user")

    async def test_grant_and_revoke(self) -> None:
        await self.act(action="add", username="bob", **hashed("bobs-pw"))
        self.assertEqual(await self.act(action="grant", username="bob"), {"user": "bob", "action": "granted"})
        self.assertEqual(await self.store.operators(), {"bob"})
        self.assertEqual([row["operator"] for row in await self.act(action="list")], [True])
        self.assertEqual(await self.act(action="revoke", username="bob"), {"user": "bob", "action": "revoked"})
        self.assertEqual(await self.store.operators(), set())
        self.assertEqual((await self.refused(action="grant", username="vader")).code, "unknown_user")
        # A deleted operator's name, taken again, is no operator.
        await self.act(action="grant", username="bob")
        await self.act(action="delete", username="bob")
        await self.act(action="add", username="bob", **hashed("bobs-pw"))
        self.assertEqual(await self.store.operators(), set())

    async def test_ban_unban_bans(self) -> None:
        await self.act(action="add", username="bob", **hashed("bobs-pw"))
        banned = await self.act(action="ban", target="bob", duration=600, reason="spam")
        self.assertEqual(banned, {"ban": {
            "id": banned["ban"]["id"], "kind": "user", "target": "bob", "set_by": "chatservice-admin",
            "set_at": "2023-11-14T22:30:00+00:00", "until": "2023-11-14T22:40:00+00:00", "reason": "spam",
        }})
        network = await self.act(action="ban", target="192.0.2.7/24")
        self.assertEqual((network["ban"]["kind"], network["ban"]["target"], network["ban"]["until"]),
                         ("network", "192.0.2.0/24", None))
        self.assertEqual([b["target"] for b in await self.act(action="bans")], ["bob", "192.0.2.0/24"])
        self.assertEqual([b.target for b in await self.store.bans()], ["bob", "192.0.2.0/24"])
        self.assertEqual(await self.act(action="unban", target=f"#{network['ban']['id']}"),
                         {"target": str(network["ban"]["id"]), "removed": 1})
        self.assertEqual(await self.act(action="unban", target="bob"), {"target": "bob", "removed": 1})
        self.assertEqual((await self.refused(action="unban", target="bob")).code, "no_such_ban")
        self.assertEqual((await self.refused(action="ban", target="vader")).code, "unknown_user")
        self.assertEqual((await self.refused(action="ban", target="10.0.0.0/99")).code, "invalid_request")
        self.assertEqual((await self.refused(action="ban", target="bob", duration=-1)).code, "invalid_request")
        # An expired ban is not listed.
        await self.act(action="ban", target="bob", duration=1)
        self.clock.advance(2)
        self.assertEqual(await self.act(action="bans"), [])

    async def test_unlock_needs_a_server(self) -> None:
        error = await self.refused(action="unlock", username="bob")
        self.assertEqual(error.code, "not_running")
        error = await self.refused(action="unlock", address="10.0.0.1")
        self.assertEqual(error.code, "not_running")

    async def test_purge(self) -> None:
        for i in range(PURGE_BATCH + 20):
            await self.store.add_history("broadcast", "yoda", f"m{i}", T + i)
        purging = self.actions.run({"action": "purge", "before": T + PURGE_BATCH + 10})
        # The second batch waits for the next reactor turn (the Clock's).
        while not purging.called:
            self.clock.advance(0)
            await task.deferLater(reactor, 0.001, lambda: None)
        self.assertEqual((await purging)["purged"], PURGE_BATCH + 10)
        left = await self.store.history_after(["broadcast"], 0)
        self.assertEqual(left[0].text, f"m{PURGE_BATCH + 10}")
        self.assertEqual(len(left), 10)
        # Relative to the clock: everything older than 100 s (the clock is at T + 1000).
        self.assertEqual((await self.act(action="purge", older_than=100))["purged"], 10)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_bad_requests(self) -> None:
        for request, message in (
            ({"action": "frob"}, "no such action: 'frob'"),
            ({"action": "list", "extra": 1}, "unknown fields: extra"),
            ({"action": "remove"}, "remove takes username"),
            ({"action": "unlock"}, "give one of username or address"),
            ({"action": "unlock", "address": "10.0.0.x"}, "not an IP address: '10.0.0.x'"),
            ({"action": "purge"}, "give one of before or older_than, in seconds"),
            ({"action": "purge", "before": 1, "older_than": 2}, "give one of before or older_than, in seconds"),
            ({"action": "purge", "before": "yesterday"}, "give one of before or older_than, in seconds"),
            ({"action": "passwd", "username": "x", "create": "yes", **hashed("pw-pw")}, "create is true or false"),
        ):
            error = await self.refused(**request)
            self.assertEqual((error.code, error.message), ("invalid_request", message))


class MemoryStoreActionsTests(StoreActionsBehaviour, unittest.TestCase):
    def make_store(self) -> Any:
        return LocalStore(MemoryStore())


class SQLiteStoreActionsTests(StoreActionsBehaviour, unittest.TestCase):
    def make_store(self) -> Any:
        directory = Path(tempfile.mkdtemp(prefix="chat-admin-test-"))
        self.addCleanup(shutil.rmtree, directory, True)
        return LocalStore(SQLiteStore(directory / "chat.sqlite3"))


class PostgresStoreActionsTests(StoreActionsBehaviour, unittest.TestCase):
    def make_store(self) -> Any:
        from chatservice.store.postgres import PostgresStore

        return PostgresStore(pg_support.new_database(self), reactor)


class LiveActionsTests(unittest.TestCase):
    """The actions inside a running server: its memory and its users follow at once."""

    def setUp(self) -> None:
        self.harness = harness = ChatHarness(max_failures=3, block_duration=60)
        self.actions = AdminActions(
            harness.accounts, harness.clock,
            LiveServer(harness.state, [harness.lockout, harness.address_lockout], harness.slowdown),
        )

    def tearDown(self) -> None:
        self.harness.close_all()

    def run_action(self, **request: Any) -> Any:
        return self.successResultOf(self.actions.run(request))

    def test_added_account_logs_in_at_once(self) -> None:
        self.run_action(action="add", username="rey", **hashed("scavenger"))
        (leia,) = self.harness.online("leia")
        rey = self.harness.connect()
        rey.login("rey", "scavenger")
        self.assertTrue(self.harness.state.online("rey"))
        self.assertIn("rey", self.harness.accounts.usernames())
        self.harness.close_all(leia, rey)

    def test_guest_name_online_is_taken(self) -> None:
        harness = ChatHarness(allow_guests=True)
        actions = AdminActions(harness.accounts, harness.clock,
                               LiveServer(harness.state, [harness.lockout, harness.address_lockout], harness.slowdown))
        guest = harness.connect()
        guest.send("guest finn")
        failure = self.failureResultOf(
            actions.run({"action": "add", "username": "finn", **hashed("pw-pw")}), AdminError
        )
        self.assertEqual(failure.value.code, "taken")
        harness.close_all(guest)

    def test_remove_ends_the_session_and_memory_follows(self) -> None:
        harness = self.harness
        state = harness.state
        hans, yoda, leia = harness.online("hans", "yoda", "leia")
        hans.send("block yoda")
        yoda.send("block hans")
        yoda.send("room create hans")
        hans.output(), yoda.output(), leia.output()
        self.assertTrue(state.has_blocked("hans", "yoda"))

        result = self.run_action(action="remove", username="hans")
        self.assertEqual(result, {
            "user": "hans", "action": "removed",
            "warning": f"hans is in the credentials file {harness.credentials_path}, which the"
            " server imports at start: remove the line, or the account comes back at the next start",
        })
        # hans is told, and his connection closes; yoda sees him leave.
        self.assertEqual(hans.lines()[-1], REMOVED.message)
        self.assertTrue(hans.closed)
        self.assertIn("hans logged out", leia.output())
        # Memory forgot him: no session, no blocks, no room, no last-seen time, no name.
        self.assertIsNone(state.online("hans"))
        self.assertFalse(state.has_blocked("hans", "yoda") or state.has_blocked("yoda", "hans"))
        self.assertEqual([r.members for r in state.rooms.of("yoda")], [])
        self.assertIsNone(state.last_seen_at("hans"))
        self.assertNotIn("hans", harness.accounts.usernames())
        self.assertFalse(harness.accounts.exists("hans"))
        # ... and so did the store; he cannot log in again.
        self.assertIsNone(harness.store.account("hans"))
        self.assertEqual(list(harness.store.last_seen()), [])
        again = harness.connect()
        again.send("hans")
        self.assertIn("Unknown user hans", again.output())
        harness.close_all(hans, yoda, leia, again)

    def test_delete_takes_the_history_too(self) -> None:
        harness = self.harness
        hans, yoda = harness.online("hans", "yoda")
        hans.send("broadcast from hans")
        yoda.send("broadcast from yoda")
        self.run_action(action="delete", username="hans")
        self.assertEqual([e.sender for e in harness.store.history_after(["broadcast"], 0)], ["yoda"])
        harness.close_all(hans, yoda)

    def test_delete_forgets_a_long_history_a_batch_a_turn(self) -> None:
        harness = self.harness
        for i in range(2 * PURGE_BATCH + 5):
            harness.store.add_history("broadcast", "hans", f"h{i}", T + i)
        harness.store.add_history("broadcast", "yoda", "stays", T)
        deleting = self.actions.run({"action": "delete", "username": "hans"})
        # The first batch at once, the others on later turns (of the Clock).
        self.assertFalse(deleting.called)
        self.assertEqual(len(harness.store.history_after(["broadcast"], 0)), PURGE_BATCH + 6)
        harness.clock.advance(0)
        self.assertEqual(self.successResultOf(deleting)["action"], "deleted")
        self.assertEqual([e.text for e in harness.store.history_after(["broadcast"], 0)], ["stays"])
        self.assertIsNone(harness.store.account("hans"))

    def test_revoke_or_remove_of_an_operator_named_at_start_warns(self) -> None:
        """``--operator NAME`` grants again at each start, and refuses to start without the account."""
        self.harness.state.moderation.granted = ("yoda",)
        self.run_action(action="grant", username="yoda")
        revoked = self.run_action(action="revoke", username="yoda")
        self.assertEqual(revoked["action"], "revoked")
        self.assertIn("started with --operator yoda", revoked["warning"])
        self.assertNotIn("warning", self.run_action(action="revoke", username="leia"))
        removed = self.run_action(action="remove", username="yoda")
        self.assertIn("credentials file", removed["warning"])
        self.assertIn(
            "the server was started with --operator yoda: remove the option, or the server"
            " refuses to start the next time", removed["warning"],
        )

    def test_remove_ends_a_mute(self) -> None:
        """A removed account's mute goes with it: whoever takes the name next is not muted."""
        moderation = self.harness.state.moderation
        moderation.mute("hans", Mute(self.harness.clock.seconds() + 3600, "yoda"))
        self.run_action(action="remove", username="hans")
        self.assertIsNone(moderation.muted("hans"))

    def test_export_says_whether_online(self) -> None:
        (hans,) = self.harness.online("hans")
        self.assertIs(self.run_action(action="export", username="hans")["online"], True)
        self.assertIs(self.run_action(action="export", username="yoda")["online"], False)
        listed = {row["user"]: row["online"] for row in self.run_action(action="list")}
        self.assertEqual(listed["hans"], True)
        self.assertEqual(listed["yoda"], False)
        self.harness.close_all(hans)

    def test_grant_counts_at_once(self) -> None:
        (hans,) = self.harness.online("hans")
        hans.send("announce hello")
        self.assertIn("Invalid command", hans.output())
        self.run_action(action="grant", username="hans")
        self.assertEqual(self.harness.state.moderation.operators, {"hans"})
        hans.send("announce hello")
        self.assertNotIn("Invalid command", hans.output())
        self.run_action(action="revoke", username="hans")
        hans.send("announce hello")
        self.assertIn("Invalid command", hans.output())
        self.harness.close_all(hans)

    def test_ban_ends_the_session_and_unban_lets_in(self) -> None:
        harness = self.harness
        (hans,) = harness.online("hans")
        self.assertEqual(self.run_action(action="ban", target="hans", reason="spam")["sessions_ended"], 1)
        self.assertIn("You have been banned from this server by chatservice-admin", hans.output())
        self.assertTrue(hans.closed)
        again = harness.connect()
        again.send("hans")
        again.send("falcon")
        self.assertIn("banned", again.output())
        self.run_action(action="unban", target="hans")
        self.assertEqual(harness.state.moderation.in_force(), [])
        back = harness.connect()
        back.login("hans")
        self.assertIsNotNone(harness.state.online("hans"))
        harness.close_all(hans, again, back)

    def test_unlock(self) -> None:
        harness = self.harness
        intruder = harness.connect(host="203.0.113.9")
        intruder.send("yoda")
        for attempt in ("a", "b", "c"):
            intruder.send(attempt)
            if attempt != "c":
                intruder.send("yoda")
        self.assertIsNotNone(harness.lockout.locked_for("yoda@203.0.113.9"))
        self.assertEqual(
            self.run_action(action="unlock", username="yoda"),
            {"user": "yoda", "locks": 1, "slowed": False},
        )
        self.assertIsNone(harness.lockout.locked_for("yoda@203.0.113.9"))
        # The address is locked too (as many failures): unlocked on its own.
        self.assertIsNotNone(harness.address_lockout.locked_for("203.0.113.9"))
        self.assertEqual(
            self.run_action(action="unlock", address="203.0.113.9"),
            {"address": "203.0.113.9", "locks": 1},
        )
        owner = harness.connect(host="203.0.113.9")
        owner.login("yoda")
        self.assertIsNotNone(harness.state.online("yoda"))
        # Nothing locked: nothing to clear, and no error.
        self.assertEqual(self.run_action(action="unlock", username="hans")["locks"], 0)
        harness.close_all(intruder, owner)
