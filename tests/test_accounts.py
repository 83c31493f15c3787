"""Hashed passwords, the atomic credentials writer, registration and passwd (in the store), guests."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable
from unittest import mock

from twisted.internet import defer, threads
from twisted.trial import unittest

from chatservice.auth import credentials as credentials_module
from chatservice.auth import directory as directory_module
from chatservice.auth.accounts import (
    AccountError,
    AccountManager,
    hash_and_derive,
    password_problem,
)
from chatservice.auth.credentials import CredentialsError, CredentialsFile, write_entry
from chatservice.auth.directory import CredentialsChecker
from chatservice.auth.errors import UnknownUser, WrongPassword
from chatservice.auth.passwords import hash_password, is_hashed, verify_password
from chatservice.auth.scram import InvalidProof, ScramKeys
from twisted.cred.credentials import UsernamePassword
from chatservice.store.sqlite import StoreError
from tests.support import memory_accounts, stored_account
from tests.test_protocol import HarnessTestCase
from tests.test_scram import login as scram_login

FAST = 4  # log2(n) for hashes made in tests: same code path, less CPU


class PasswordHashTests(unittest.TestCase):
    """The scrypt hash format."""

    def test_hash_and_verify(self) -> None:
        secret = hash_password("falcon", FAST)
        self.assertTrue(is_hashed(secret))
        self.assertTrue(secret.startswith(f"$scrypt$ln={FAST},r=8,p=1$"))
        self.assertTrue(verify_password("falcon", secret))
        self.assertFalse(verify_password("Falcon", secret))
        self.assertNotEqual(secret, hash_password("falcon", FAST), "salted")

    def test_plain_entries(self) -> None:
        self.assertFalse(is_hashed("wise"))
        self.assertTrue(verify_password("wise", "wise"))
        self.assertFalse(verify_password("wis", "wise"))

    def test_malformed_hash_never_matches(self) -> None:
        self.assertFalse(verify_password("x", "$scrypt$ln=99,r=8,p=1$AAAA$AAAA"))
        self.assertFalse(verify_password("x", "$scrypt$garbage"))

    def test_credentials_file_rejects_malformed_hash(self) -> None:
        path = Path(self.mktemp())
        path.write_text("yoda $scrypt$nonsense\n")
        with self.assertRaises(CredentialsError) as caught:
            CredentialsFile.load(path)
        self.assertIn(f"{path}:1:", str(caught.exception))

    def test_credentials_file_accepts_hash(self) -> None:
        path = Path(self.mktemp())
        path.write_text(f"yoda {hash_password('wise', FAST)}\nhans falcon\n")
        accounts = CredentialsFile.load(path)
        self.assertTrue(is_hashed(accounts.secret("yoda") or ""))


class WriteEntryTests(unittest.TestCase):
    """write_entry adds or replaces one line, atomically."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.write_text("# accounts\nyoda wise\nhans falcon\n")

    def test_append_and_replace(self) -> None:
        write_entry(self.path, "luke", "jedi")
        write_entry(self.path, "yoda", "wiser")
        self.assertEqual(
            self.path.read_text(), "# accounts\nyoda wiser\nhans falcon\nluke jedi\n"
        )

    def test_crash_mid_write_leaves_the_old_file(self) -> None:
        before = self.path.read_bytes()
        with mock.patch.object(credentials_module.os, "replace", side_effect=OSError("disk")):
            self.assertRaises(OSError, write_entry, self.path, "luke", "jedi")
        self.assertEqual(self.path.read_bytes(), before)
        self.assertEqual(os.listdir(self.path.parent), [self.path.name])

    def test_mode_kept(self) -> None:
        os.chmod(self.path, 0o600)
        write_entry(self.path, "luke", "jedi")
        self.assertEqual(self.path.stat().st_mode & 0o777, 0o600)


class ManualRunner:
    """A run_in_thread whose calls wait until the test runs them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def run_next(self) -> None:
        f, args, d = self.calls.pop(0)
        try:
            d.callback(f(*args))
        except Exception:
            d.errback()


class ManagerTestCase(unittest.TestCase):
    """An AccountManager over a memory store holding ``initial``, a ManualRunner and fast hashes."""

    initial = {"yoda": "wise"}

    def setUp(self) -> None:
        self.accounts = memory_accounts(self.initial)
        self.store = self.accounts.store.local
        self.runner = ManualRunner()
        self.manager = AccountManager(self.accounts, self.runner)
        patcher = mock.patch("chatservice.auth.accounts.hash_password", lambda p: hash_password(p, FAST))
        patcher.start()
        self.addCleanup(patcher.stop)

    def run_all(self) -> None:
        while self.runner.calls:
            self.runner.run_next()

    def secret(self, username: str) -> str:
        """The secret the store has for ``username`` (``""`` for none)."""
        account = stored_account(self.store, username)
        return "" if account is None else account.secret

    def keys(self, username: str) -> ScramKeys | None:
        """The SCRAM keys the store has for ``username``."""
        account = stored_account(self.store, username)
        return None if account is None else account.scram


class AccountManagerTests(ManagerTestCase):
    """Registration and password changes."""

    def test_register_stores_a_hash_then_takes_effect(self) -> None:
        d = self.manager.register("luke", "jedi-knight")
        self.assertFalse(self.accounts.exists("luke"), "not before it is stored")
        self.assertTrue(self.manager.taken("luke"), "reserved meanwhile")
        self.run_all()
        self.successResultOf(d)
        self.assertTrue(self.accounts.exists("luke"))
        self.assertTrue(is_hashed(self.secret("luke")))
        self.assertNotIn("jedi-knight", repr(self.store.account("luke")))

    def test_two_registrations_of_one_name_exactly_one_wins(self) -> None:
        first = self.manager.register("luke", "jedi-one")
        second = self.manager.register("luke", "jedi-two")
        self.run_all()
        self.successResultOf(first)
        self.assertEqual(self.failureResultOf(second, AccountError).value.code, "taken")
        self.assertTrue(verify_password("jedi-one", self.secret("luke")))

    def test_name_taken_in_the_store_meanwhile(self) -> None:
        """Registered on another node while this one hashed: this one is told it is taken."""
        d = self.manager.register("luke", "jedi-one")
        self.store.add_account("luke", "from-another-node", None)
        self.run_all()
        self.assertEqual(self.failureResultOf(d, AccountError).value.code, "taken")
        self.assertEqual(self.secret("luke"), "from-another-node")
        self.assertFalse(self.manager._reserved)
        self.assertTrue(self.manager.taken("luke"), "known here now")

    def test_register_rules(self) -> None:
        for username, password, code in [
            ("yoda", "whatever", "taken"),
            ("bad name", "whatever", "invalid_username"),
            ("", "whatever", "invalid_username"),
            ("x" * 33, "whatever", "invalid_username"),
            ("tab\tname", "whatever", "invalid_username"),
            ("luke", "abc", "invalid_password"),
            ("luke", " padded ", "invalid_password"),
        ]:
            failure = self.failureResultOf(self.manager.register(username, password), AccountError)
            self.assertEqual(failure.value.code, code, (username, password))
        self.assertEqual(self.runner.calls, [])

    def test_failed_write_releases_the_name(self) -> None:
        d = self.manager.register("luke", "jedi-knight")
        with mock.patch.object(self.store, "add_account", side_effect=StoreError("disk full")):
            self.run_all()
        self.failureResultOf(d, StoreError)
        self.assertFalse(self.manager.taken("luke"))
        self.assertFalse(self.accounts.exists("luke"))
        self.assertIsNone(self.store.account("luke"))

    def test_change_password(self) -> None:
        d = self.manager.change_password("yoda", "wise", "wiser-still")
        self.run_all()
        self.successResultOf(d)
        self.assertTrue(verify_password("wiser-still", self.secret("yoda")))
        wrong = self.manager.change_password("yoda", "wise", "another-one")
        self.run_all()
        self.assertEqual(self.failureResultOf(wrong, AccountError).value.code, "wrong_password")

    def test_password_rules(self) -> None:
        self.assertIsNone(password_problem("jedi"))
        self.assertIsNotNone(password_problem("x" * 257))
        self.assertIsNotNone(password_problem("a\x01bcd"))


class AccountScramTests(ManagerTestCase):
    """Registration and password changes store SCRAM keys; AccountManager.scram_keys finds them."""

    def setUp(self) -> None:
        self.hashed = hash_password("falcon", FAST)
        self.initial = {"yoda": "wise", "hans": self.hashed}
        super().setUp()
        self.derived: list[str] = []
        real_derive = ScramKeys.derive

        def counting_derive(password: str, *args: Any) -> ScramKeys:
            self.derived.append(password)
            return real_derive(password, *args)

        patcher = mock.patch.object(ScramKeys, "derive", staticmethod(counting_derive))
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_register_writes_keys(self) -> None:
        d = self.manager.register("luke", "jedi-knight")
        self.assertEqual(self.derived, [], "derived in the runner, not at once")
        (f, args, _), = self.runner.calls
        self.assertEqual((f, args), (hash_and_derive, ("jedi-knight",)))
        self.run_all()
        self.successResultOf(d)
        keys = self.keys("luke")
        assert keys is not None
        self.assertEqual(self.store.account("luke"), (self.secret("luke"), keys.format()))
        self.assertNotIn("jedi-knight", repr(self.store.account("luke")))
        scram_login("luke", "jedi-knight", keys)
        self.assertRaises(InvalidProof, scram_login, "luke", "jedi-knighT", keys)
        self.assertEqual(self.successResultOf(self.manager.scram_keys("luke")), keys)

    def test_change_password_writes_new_keys(self) -> None:
        d = self.manager.change_password("hans", "falcon", "millennium")
        self.run_all()
        self.successResultOf(d)
        keys = self.successResultOf(self.manager.scram_keys("hans"))
        scram_login("hans", "millennium", keys)
        self.assertRaises(InvalidProof, scram_login, "hans", "falcon", keys)
        self.assertEqual(self.keys("hans"), keys)

    def test_plain_entry_derived_once_in_the_runner(self) -> None:
        first = self.manager.scram_keys("yoda")
        second = self.manager.scram_keys("yoda")
        self.assertNoResult(first)
        self.assertNoResult(second)
        (f, args, _), = self.runner.calls
        self.assertEqual(args, ("wise",))
        self.assertEqual(self.derived, [])
        self.runner.run_next()
        keys = self.successResultOf(first)
        self.assertIs(self.successResultOf(second), keys)
        self.assertIs(self.successResultOf(self.manager.scram_keys("yoda")), keys)
        self.assertEqual((self.runner.calls, self.derived), ([], ["wise"]))
        scram_login("yoda", "wise", keys)
        self.assertEqual(self.store.account("yoda"), ("wise", None), "kept in memory only")

    def test_plain_entry_changed_is_derived_again(self) -> None:
        d = self.manager.scram_keys("yoda")
        self.run_all()
        old = self.successResultOf(d)
        self.store.set_secret("yoda", "wiser", None)
        d = self.manager.scram_keys("yoda")
        self.run_all()
        new = self.successResultOf(d)
        scram_login("yoda", "wiser", new)
        self.assertNotEqual(old.salt, new.salt)

    def test_changed_while_deriving_is_not_kept(self) -> None:
        d = self.manager.scram_keys("yoda")
        self.store.set_secret("yoda", "wiser", None)
        self.run_all()
        self.successResultOf(d)
        d = self.manager.scram_keys("yoda")
        self.run_all()
        scram_login("yoda", "wiser", self.successResultOf(d))

    def test_failed_derivation_reaches_every_caller(self) -> None:
        first, second = self.manager.scram_keys("yoda"), self.manager.scram_keys("yoda")
        _, _, deriving = self.runner.calls.pop(0)
        deriving.errback(RuntimeError("no threads"))
        self.failureResultOf(first, RuntimeError)
        self.failureResultOf(second, RuntimeError)
        again = self.manager.scram_keys("yoda")
        self.run_all()
        scram_login("yoda", "wise", self.successResultOf(again))

    def test_hashed_without_keys(self) -> None:
        self.assertIsNone(self.successResultOf(self.manager.scram_keys("hans")))
        self.assertEqual(self.runner.calls, [])

    def test_unknown_user(self) -> None:
        self.failureResultOf(self.manager.scram_keys("vader"), UnknownUser)

    def test_add_keys_after_a_password_login(self) -> None:
        d = self.manager.add_scram_keys("hans", "falcon")
        self.run_all()
        self.assertTrue(self.successResultOf(d))
        keys = self.keys("hans")
        assert keys is not None
        scram_login("hans", "falcon", keys)
        self.assertEqual(self.secret("hans"), self.hashed, "the hash is kept")
        again = self.manager.add_scram_keys("hans", "falcon")
        self.assertFalse(self.successResultOf(again), "already there")

    def test_add_keys_needs_the_right_password(self) -> None:
        d = self.manager.add_scram_keys("hans", "Falcon")
        self.run_all()
        self.assertFalse(self.successResultOf(d))
        self.assertIsNone(self.keys("hans"))
        self.assertEqual(self.derived, [])

    def test_add_keys_not_for_plain_or_unknown(self) -> None:
        self.assertFalse(self.successResultOf(self.manager.add_scram_keys("yoda", "wise")))
        self.assertFalse(self.successResultOf(self.manager.add_scram_keys("vader", "x")))
        self.assertEqual(self.runner.calls, [])

    def test_add_keys_after_a_change_is_dropped(self) -> None:
        adding = self.manager.add_scram_keys("hans", "falcon")
        held = self.runner.calls.pop(0)  # adding: verify and derive, later
        changing = self.manager.change_password("hans", "falcon", "millennium")
        self.run_all()
        self.successResultOf(changing)
        self.runner.calls.append(held)
        self.run_all()
        self.assertFalse(self.successResultOf(adding), "the entry changed meanwhile")
        keys = self.keys("hans")
        assert keys is not None
        scram_login("hans", "millennium", keys)

    def test_add_keys_when_another_node_added_them_first(self) -> None:
        adding = self.manager.add_scram_keys("hans", "falcon")
        theirs = ScramKeys.derive("falcon")
        self.assertTrue(self.store.add_scram_keys("hans", self.hashed, theirs.format()))
        self.run_all()
        self.assertFalse(self.successResultOf(adding))
        self.assertEqual(self.keys("hans"), theirs)

    def test_add_keys_before_a_change_is_replaced(self) -> None:
        changing = self.manager.change_password("hans", "falcon", "millennium")
        adding = self.manager.add_scram_keys("hans", "falcon")
        self.run_all()
        self.successResultOf(changing)
        self.successResultOf(adding)
        keys = self.keys("hans")
        assert keys is not None
        scram_login("hans", "millennium", keys)
        self.assertTrue(verify_password("millennium", self.secret("hans")))


class HashingOffTheReactorTests(unittest.TestCase):
    """Hashed entries are verified by the runner (a thread), never inline."""

    def setUp(self) -> None:
        self.accounts = memory_accounts({"yoda": hash_password("wise", FAST), "hans": "falcon"})

    def test_hashed_entry_goes_to_the_runner(self) -> None:
        runner = ManualRunner()
        checker = CredentialsChecker(self.accounts, runner)
        d = checker.requestAvatarId(UsernamePassword("yoda", "wise"))
        self.assertNoResult(d)
        (f, args, _), = runner.calls
        self.assertIs(f, verify_password)
        runner.run_next()
        self.assertEqual(self.successResultOf(d), "yoda")
        wrong = checker.requestAvatarId(UsernamePassword("yoda", "nope"))
        runner.run_next()
        self.failureResultOf(wrong, WrongPassword)

    def test_plain_entry_needs_no_thread(self) -> None:
        runner = ManualRunner()
        checker = CredentialsChecker(self.accounts, runner)
        self.assertEqual(self.successResultOf(checker.requestAvatarId(UsernamePassword("hans", "falcon"))), "hans")
        self.assertEqual(runner.calls, [])

    def test_real_thread_pool(self) -> None:
        """With the reactor's thread pool, the KDF runs on another thread."""
        from twisted.internet import reactor

        seen: list[str] = []
        real_verify = directory_module.verify_password

        def recording_verify(password: str, secret: str) -> bool:
            seen.append(threading.current_thread().name)
            return real_verify(password, secret)

        patcher = mock.patch.object(directory_module, "verify_password", recording_verify)
        patcher.start()
        self.addCleanup(patcher.stop)
        checker = CredentialsChecker(
            self.accounts,
            lambda f, *a: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *a),
        )
        d = checker.requestAvatarId(UsernamePassword("yoda", "wise"))

        def check(avatar_id: str) -> None:
            self.assertEqual(avatar_id, "yoda")
            self.assertEqual(len(seen), 1)
            self.assertNotEqual(seen[0], threading.main_thread().name)

        return d.addCallback(check)


class RegistrationProtocolTests(HarnessTestCase):
    """--allow-register over text and JSON."""

    harness_options = {"allow_register": True}

    def setUp(self) -> None:
        super().setUp()
        patcher = mock.patch("chatservice.auth.accounts.hash_password", lambda p: hash_password(p, FAST))
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_text_registration(self) -> None:
        connection = self.connect()
        connection.send("anakin")
        self.assertEqual(
            connection.output(),
            "There is no account anakin.\r\nCreate a new account with that name? (yes/no) ",
        )
        connection.send("maybe")
        self.assertEqual(connection.output(), "Create a new account with that name? (yes/no) ")
        connection.send("yes")
        self.assertEqual(connection.output(), "New password: ")
        connection.send("padme-1")
        self.assertEqual(connection.output(), "Repeat the password: ")
        connection.send("padme-2")
        self.assertEqual(
            connection.output(), "Error. The passwords differ; try again.\r\nNew password: "
        )
        connection.send("padme-1")
        connection.output()
        connection.send("padme-1")
        self.assertEqual(
            connection.lines(),
            [
                "Account anakin created.",
                "Welcome to chatservice, anakin! Type help for the list of commands.",
            ],
        )
        account = self.harness.account("anakin")
        assert account is not None
        self.assertTrue(account.secret.startswith("$scrypt$"))
        self.assertNotIn("anakin", self.harness.credentials_path.read_text(), "never written")
        connection.send("logout")
        connection.drop()
        again = self.connect()
        again.login("anakin", "padme-1")
        self.assertIn("anakin", self.harness.state.sessions)

    def test_declining_asks_for_a_name_again(self) -> None:
        connection = self.connect()
        connection.send("anakin")
        connection.output()
        connection.send("no")
        self.assertEqual(connection.output(), "Username: ")

    def test_json_registration(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "register", "user": "yoda", "id": 1})
        connection.send_json({"type": "register", "user": "anakin", "id": 2})
        connection.send_json({"type": "register", "user": "anakin", "password": "padme-1", "id": 3})
        connection.send_json({"type": "register", "user": "anakin", "password": "padme-2", "id": 4})
        connection.send_json({"type": "login", "user": "anakin", "password": "padme-1", "id": 5})
        replies = connection.json()
        self.assertEqual(
            replies[:3],
            [
                {"type": "username_register_status", "user": "yoda", "taken": True, "id": 1},
                {"type": "username_register_status", "user": "anakin", "taken": False, "id": 2},
                {"type": "register_status", "status": True, "user": "anakin", "id": 3},
            ],
        )
        self.assertEqual((replies[3]["status"], replies[3]["code"]), (False, "taken"))
        self.assertEqual((replies[4]["type"], replies[4]["success"]), ("login", True))

    def test_salt_without_a_scram_message_is_explained(self) -> None:
        """The original design's bare ``salt`` request: told what SCRAM needs."""
        connection = self.connect()
        connection.send_json({"type": "salt", "user": "yoda"})
        (reply,) = connection.json()
        self.assertEqual(reply["code"], "missing_field")
        self.assertIn("SCRAM-SHA-256 client-first message", reply["message"])

    def test_passwd(self) -> None:
        (yoda,) = self.online("yoda")
        yoda.send("passwd wrong newpass")
        self.assertEqual(yoda.lines(), ["Error. Your current password is not that."])
        yoda.send("passwd wise wiser")
        self.assertEqual(yoda.lines(), ["Your password has been changed."])
        account = self.harness.account("yoda")
        assert account is not None and account.scram is not None
        self.assertTrue(is_hashed(account.secret))
        scram_login("yoda", "wiser", account.scram)
        self.assertEqual(self.harness.credentials_path.read_text().count("yoda wise\n"), 1, "never written")
        yoda.send("whoelse")
        self.assertEqual(yoda.lines(), ["No other users are online."])


class RegistrationDisabledTests(HarnessTestCase):
    """Without --allow-register, unknown users are just unknown."""

    def test_text(self) -> None:
        connection = self.connect()
        connection.send("anakin")
        self.assertEqual(
            connection.output(), "Error. Unknown user anakin. Please try again.\r\nUsername: "
        )

    def test_json(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "register", "user": "anakin", "password": "padme-1"})
        (reply,) = connection.json()
        self.assertEqual((reply["status"], reply["code"]), (False, "registration_disabled"))


class GuestTests(HarnessTestCase):
    """--allow-guests."""

    harness_options = {"allow_guests": True, "allow_register": True}

    def test_text_guest(self) -> None:
        (yoda,) = self.online("yoda")
        connection = self.connect()
        connection.send("guest rey")
        self.assertEqual(
            connection.lines(),
            ["Welcome to chatservice, rey (guest)! Type help for the list of commands."],
        )
        self.assertEqual(yoda.lines(), ["rey logged in"])
        yoda.send("whoelse")
        self.assertEqual(yoda.lines(), ["rey (guest)"])
        yoda.send("message rey hello guest")
        self.assertEqual(connection.lines(), ["yoda: hello guest"])
        connection.send("passwd a bcde")
        self.assertEqual(connection.lines(), ["Error. Only accounts have passwords."])

    def test_guest_name_rules(self) -> None:
        self.online("yoda")
        rey = self.connect()
        rey.send_json({"type": "guest", "user": "rey"})
        for name, expected in [("yoda", "username_taken"), ("rey", "username_taken"), ("hans", "username_taken")]:
            other = self.connect()
            other.send_json({"type": "guest", "user": name, "id": 9})
            (reply,) = other.json()
            self.assertEqual(reply["type"], expected, name)
        other = self.connect()
        other.send_json({"type": "guest", "user": "two words"})
        self.assertEqual(other.json()[0]["reason"], "invalid_username")

    def test_cannot_register_over_online_guest(self) -> None:
        rey = self.connect()
        rey.send("guest rey")
        other = self.connect()
        other.send_json({"type": "register", "user": "rey", "password": "secret-1"})
        (reply,) = other.json()
        self.assertEqual((reply["status"], reply["code"]), (False, "taken"))


class GuestsDisabledTests(HarnessTestCase):
    """Without --allow-guests."""

    def test_guest_refused(self) -> None:
        connection = self.connect()
        connection.send_json({"type": "guest", "user": "rey", "id": 1})
        self.assertEqual(connection.json()[0]["code"], "guests_disabled")
        text = self.connect()
        text.send("guest rey")
        self.assertIn("Error. Invalid user name", text.output())
