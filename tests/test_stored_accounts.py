"""Accounts in the store: :class:`StoredAccounts`, the import of the credentials file, and two nodes on one store.

The nodes are whole servers (:class:`~tests.support.ChatHarness`) on a
``Clock``, sharing one memory store as two ``twistd chat`` processes share a
PostgreSQL database: what one registers or changes, the other sees.  The
same with real processes is in ``test_accounts_end_to_end.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial import unittest

from chatservice.auth.credentials import CredentialsFile
from chatservice.auth.directory import REFRESH_AFTER, Account, StoredAccounts
from chatservice.auth.passwords import hash_password, verify_password
from chatservice.auth.scram import ScramKeys
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.support import ChatHarness, Connection
from tests.test_scram import login as scram_login

FAST = 4  # log2(n) for hashes made in tests


def fast_hashes(case: unittest.TestCase) -> None:
    """Make registration and passwd hash with few rounds for the rest of the test."""
    patcher = mock.patch(
        "chatservice.auth.accounts.hash_password", lambda p: hash_password(p, FAST)
    )
    patcher.start()
    case.addCleanup(patcher.stop)


class StoredAccountsTests(unittest.TestCase):
    """The directory over a memory store: import, cache, look-ups."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def directory(self, imported: CredentialsFile | None = None) -> StoredAccounts:
        accounts = StoredAccounts(LocalStore(self.store), self.clock, imported)
        self.successResultOf(accounts.load())
        return accounts

    def credentials(self, text: str) -> CredentialsFile:
        path = Path(self.mktemp())
        path.write_text(text, encoding="utf-8")
        return CredentialsFile.load(path)

    def logged(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_import_into_an_empty_store(self) -> None:
        hashed = hash_password("falcon", FAST)
        keys = ScramKeys.derive("falcon")
        accounts = self.directory(self.credentials(f"yoda wise\nhans {hashed} {keys.format()}\n"))
        self.assertEqual(accounts.usernames(), ["hans", "yoda"])
        self.assertEqual(self.store.account("yoda"), ("wise", None))
        self.assertEqual(self.store.account("hans"), (hashed, keys.format()))
        self.assertEqual(
            self.successResultOf(accounts.account("hans")), Account(hashed, keys)
        )
        self.assertTrue(any("2 imported from" in line and "0 already in the store" in line for line in self.logged()))

    def test_the_store_wins(self) -> None:
        """An account the store has is kept as it is: the file does not undo a password change."""
        changed = hash_password("wiser", FAST)
        self.store.add_account("yoda", changed, None)
        file = self.credentials("yoda wise\nluke jedi\n")
        accounts = self.directory(file)
        self.assertEqual(self.store.account("yoda"), (changed, None))
        self.assertEqual(self.store.account("luke"), ("jedi", None))
        self.assertEqual(accounts.usernames(), ["luke", "yoda"])
        self.assertTrue(any("1 imported from" in line and "1 already in the store kept" in line for line in self.logged()))
        # The next start imports nothing.
        self.directory(file)
        self.assertTrue(any("0 imported from" in line and "2 already in the store kept" in line for line in self.logged()))

    def test_nothing_to_import(self) -> None:
        self.store.add_account("rey", "x", None)
        self.assertEqual(self.directory().usernames(), ["rey"])

    def test_find_asks_the_store_on_a_miss(self) -> None:
        accounts = self.directory()
        self.store.add_account("rey", "x", None)  # by another node
        self.assertFalse(accounts.exists("rey"), "not in the cache yet")
        self.assertTrue(self.successResultOf(accounts.find("rey")))
        self.assertTrue(accounts.exists("rey"))
        self.assertEqual(accounts.usernames(), ["rey"])
        self.assertFalse(self.successResultOf(accounts.find("vader")))

    def test_a_password_check_reads_the_store(self) -> None:
        accounts = self.directory()
        self.store.add_account("rey", "x", None)
        self.assertEqual(self.successResultOf(accounts.account("rey")), Account("x", None))
        self.assertTrue(accounts.exists("rey"), "and the cache learns the name")
        self.assertIsNone(self.successResultOf(accounts.account("vader")))

    def test_stale_cache_read_again(self) -> None:
        accounts = self.directory()
        self.store.add_account("rey", "x", None)
        self.clock.advance(REFRESH_AFTER - 1)
        self.assertEqual(accounts.usernames(), [])
        self.assertFalse(accounts.exists("rey"))
        self.clock.advance(1)
        # The memory store answers at once, so the reload is done already.
        self.assertEqual(accounts.usernames(), ["rey"])
        self.store.add_account("ben", "x", None)
        self.assertFalse(accounts.exists("ben"), "fresh again: not read before REFRESH_AFTER")
        self.clock.advance(REFRESH_AFTER)
        self.assertTrue(accounts.exists("ben"), "a miss reloads a stale cache")

    def test_a_failed_reload_is_logged_and_retried(self) -> None:
        accounts = self.directory()
        self.clock.advance(REFRESH_AFTER)
        with mock.patch.object(self.store, "usernames", side_effect=RuntimeError("down")):
            self.assertEqual(accounts.usernames(), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.store.add_account("rey", "x", None)
        self.assertEqual(accounts.usernames(), ["rey"])

    def test_resync_reads_every_name_again_once_loaded(self) -> None:
        """What a cluster node does when back on Redis; before the first load there is nothing to do."""
        accounts = StoredAccounts(LocalStore(self.store), self.clock)
        with mock.patch.object(self.store, "usernames", side_effect=AssertionError("read")):
            self.assertIsNone(self.successResultOf(accounts.resync()))
        self.successResultOf(accounts.load())
        self.store.add_account("rey", "x", None)  # by another node, unannounced
        self.assertFalse(accounts.exists("rey"))
        self.successResultOf(accounts.resync())
        self.assertEqual(accounts.usernames(), ["rey"])

    def test_shared_told_of_created_accounts_only(self) -> None:
        accounts = self.directory()
        told: list[str] = []
        accounts.shared = mock.Mock(account_added=told.append)
        self.assertTrue(self.successResultOf(accounts.add("rey", "x", None)))
        self.assertFalse(self.successResultOf(accounts.add("rey", "y", None)))
        self.assertTrue(self.successResultOf(accounts.set_secret("rey", "z", None)))
        self.assertEqual(told, ["rey"])
        accounts.added_elsewhere("ben")
        self.assertEqual(accounts.usernames(), ["ben", "rey"])
        self.assertEqual(told, ["rey"], "a name learnt from another node is not announced again")

    def test_add_learns_a_name_taken_elsewhere(self) -> None:
        accounts = self.directory()
        self.store.add_account("rey", "theirs", None)
        self.assertFalse(self.successResultOf(accounts.add("rey", "mine", None)))
        self.assertTrue(accounts.exists("rey"))
        self.assertEqual(self.store.account("rey"), ("theirs", None))
        keys = ScramKeys.derive("pw")
        self.assertTrue(self.successResultOf(accounts.add("ben", "$scrypt$b", keys)))
        self.assertEqual(self.store.account("ben"), ("$scrypt$b", keys.format()))
        self.assertEqual(accounts.usernames(), ["ben", "rey"])

    # Removal (chatservice-admin) ------------------------------------------------------

    def test_removed_leaves_the_cache_and_is_announced(self) -> None:
        self.store.add_account("yoda", "x", None)
        self.store.add_account("y\u043eda2", "x", None)
        accounts = self.directory()
        told: list[str] = []
        accounts.shared = mock.Mock(account_removed=told.append)
        self.store.delete_user("yoda", False)
        accounts.removed("yoda")
        self.assertEqual(told, ["yoda"])
        self.assertFalse(accounts.exists("yoda"))
        self.assertEqual(accounts.usernames(), ["y\u043eda2"])
        self.assertIsNone(accounts.resembling("yoda"), "its look-alike skeleton is free again")
        accounts.added_elsewhere("ben")
        accounts.removed_elsewhere("ben")
        self.assertEqual(told, ["yoda"], "a removal learnt from another node is not announced again")
        self.assertFalse(accounts.exists("ben"))

    def test_a_skeleton_shared_by_two_names_stays_with_the_other(self) -> None:
        """Names imported before look-alikes were refused may share a skeleton."""
        self.store.add_account("yoda", "x", None)
        self.store.add_account("Yoda", "x", None)
        accounts = self.directory()
        accounts.removed("Yoda")
        self.assertEqual(accounts.resembling("YODA"), "yoda")
        accounts.removed("yoda")
        self.assertIsNone(accounts.resembling("YODA"))

    def test_a_reload_drops_names_the_store_no_longer_has(self) -> None:
        """A removal announced while this node was away from Redis is caught up by the reload."""
        self.store.add_account("yoda", "x", None)
        self.store.add_account("hans", "x", None)
        accounts = self.directory()
        self.store.delete_user("hans", False)  # by another node, unannounced
        self.assertTrue(accounts.exists("hans"))
        self.successResultOf(accounts.resync())
        self.assertEqual(accounts.usernames(), ["yoda"])

    def test_a_name_added_while_the_names_are_read_stays(self) -> None:
        from twisted.internet import defer

        accounts = self.directory()
        reading: defer.Deferred[list[str]] = defer.Deferred()
        with mock.patch.object(accounts, "store", mock.Mock(usernames=lambda: reading)):
            d = accounts.refresh()
            accounts.added_elsewhere("rey")  # announced after the read began
            reading.callback([])  # the read did not see it
        self.successResultOf(d)
        self.assertEqual(accounts.usernames(), ["rey"])


class TwoNodes(unittest.TestCase):
    """Two servers on one store, as two nodes on one PostgreSQL database."""

    options: dict[str, Any] = {"allow_register": True}

    def setUp(self) -> None:
        fast_hashes(self)
        self.a = ChatHarness(**self.options)
        self.b = ChatHarness(store=self.a.state.store, **self.options)
        self.store = self.a.store
        self.assertIs(self.b.store, self.store)
        self.files = {
            path: (path.read_bytes(), os.stat(path).st_mtime_ns)
            for path in (self.a.credentials_path, self.b.credentials_path)
        }
        self.connections: list[Connection] = []
        self.addCleanup(self.close)

    def close(self) -> None:
        for harness in (self.a, self.b):
            harness.close_all(*[c for c in self.connections if c.protocol.factory is harness.factory])

    def connect(self, node: ChatHarness) -> Connection:
        connection = node.connect()
        self.connections.append(connection)
        return connection

    def register(self, node: ChatHarness, username: str, password: str) -> None:
        connection = self.connect(node)
        connection.send_json({"type": "register", "user": username, "password": password, "id": 1})
        (reply,) = connection.json()
        self.assertEqual((reply["type"], reply["status"]), ("register_status", True), reply)

    def assertFilesUntouched(self) -> None:
        for path, (content, mtime) in self.files.items():
            self.assertEqual(path.read_bytes(), content, path)
            self.assertEqual(os.stat(path).st_mtime_ns, mtime, path)

    def test_registered_on_one_logs_in_on_the_other_at_once(self) -> None:
        self.register(self.a, "rey", "scavenger")
        self.assertFalse(self.b.accounts.exists("rey"), "b's cache does not know rey yet")
        text = self.connect(self.b)
        text.send("rey")
        self.assertEqual(text.output(), "Password: ")
        text.send("scavenger")
        self.assertEqual(text.lines(), ["Welcome to chatservice, rey! Type help for the list of commands."])
        self.assertIn("rey", self.b.state.sessions)
        self.assertFilesUntouched()

    def test_json_login_on_the_other_node(self) -> None:
        self.register(self.a, "rey", "scavenger")
        connection = self.connect(self.b)
        connection.send_json({"type": "login", "user": "rey", "password": "scavenger", "id": 2})
        (reply,) = connection.json()
        self.assertEqual((reply["type"], reply["success"]), ("login", True), reply)

    def test_scram_login_on_the_other_node(self) -> None:
        self.register(self.a, "rey", "scavenger")
        keys = self.successResultOf(self.b.gate.scram_keys("rey"))
        scram_login("rey", "scavenger", keys)

    def test_the_other_node_refuses_the_name_to_a_registration_and_a_guest(self) -> None:
        self.register(self.a, "rey", "scavenger")
        connection = self.connect(self.b)
        connection.send_json({"type": "register", "user": "rey", "id": 1})
        connection.send_json({"type": "register", "user": "rey", "password": "other-one", "id": 2})
        check, registration = connection.json()
        self.assertEqual((check["type"], check["taken"]), ("username_register_status", True))
        self.assertEqual((registration["status"], registration["code"]), (False, "taken"))
        self.assertTrue(verify_password("scavenger", self.store.account("rey")[0]))

    def test_passwd_on_one_counts_on_the_other(self) -> None:
        (yoda,) = self.a.online("yoda")
        self.connections.append(yoda)
        yoda.send("passwd wise wiser")
        self.assertEqual(yoda.lines(), ["Your password has been changed."])
        old = self.connect(self.b)
        old.send_json({"type": "login", "user": "yoda", "password": "wise"})
        self.assertEqual(old.json()[0]["reason"], "wrong_password")
        yoda.drop()
        new = self.connect(self.b)
        new.send_json({"type": "login", "user": "yoda", "password": "wiser"})
        self.assertTrue(new.json()[0]["success"])
        self.assertFilesUntouched()

    def test_message_to_a_user_registered_on_the_other_node(self) -> None:
        self.register(self.a, "rey", "scavenger")
        (yoda,) = self.b.online("yoda")
        self.connections.append(yoda)
        yoda.send("message rey welcome")
        self.assertEqual(
            yoda.lines(), ["rey is offline; your message will be delivered when they log in."]
        )
        yoda.send("message nobody hello")
        self.assertEqual(yoda.lines(), ["Error. Invalid user nobody."])
        yoda.send("users offline")
        self.assertIn("rey", yoda.output())
        rey = self.connect(self.a)
        rey.send("rey")
        rey.send("scavenger")
        self.assertIn("yoda: welcome", rey.output())

    def test_a_restarted_node_keeps_registrations_and_password_changes(self) -> None:
        self.register(self.a, "rey", "scavenger")
        (yoda,) = self.a.online("yoda")
        self.connections.append(yoda)
        yoda.send("passwd wise wiser")
        yoda.lines()
        # A new server on the same store and the same credentials file.
        again = ChatHarness(store=self.a.state.store, **self.options)
        self.assertEqual(again.accounts.usernames(), ["hans", "leia", "luke", "obiwan", "rey", "yoda"])
        login = again.connect()
        login.send_json({"type": "login", "user": "yoda", "password": "wise"})
        self.assertEqual(login.json()[0]["reason"], "wrong_password", "the store wins over the file")
        login.send_json({"type": "login", "user": "yoda", "password": "wiser"})
        login.json()
        again.close_all(login)
        self.assertFilesUntouched()


class StoreReadsPerLoginTests(unittest.TestCase):
    """A password login reads the account once; an account hashed before SCRAM once more, to add keys."""

    def setUp(self) -> None:
        fast_hashes(self)
        self.harness = ChatHarness(accounts={"yoda": "wise", "hans": hash_password("falcon", FAST)})
        self.addCleanup(self.harness.close_all)
        self.reads: list[str] = []
        real = self.harness.store.account

        def counting(username: str) -> Any:
            self.reads.append(username)
            return real(username)

        patcher = mock.patch.object(self.harness.store, "account", counting)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_plain_secret(self) -> None:
        (yoda,) = self.harness.online("yoda")
        self.assertEqual(self.reads, ["yoda"])
        self.assertFalse(self.harness.accounts.may_lack_keys("yoda"))
        yoda.drop()

    def test_hash_without_keys_then_with(self) -> None:
        self.assertTrue(self.harness.accounts.may_lack_keys("hans"), "not read yet")
        (hans,) = self.harness.online("hans")
        self.assertEqual(self.reads, ["hans", "hans"], "the check, then adding the keys")
        account = self.harness.account("hans")
        assert account is not None
        self.assertIsNotNone(account.scram)
        hans.drop()
        self.reads.clear()
        (hans,) = self.harness.online("hans")
        self.assertEqual(self.reads, ["hans"])
        hans.drop()
