"""User names (issue 15, item 4): one rule for registrations, guests and imported lines.

Names are normalised to NFC; a new name whose skeleton (NFKC, case-folded,
Cyrillic and Greek look-alikes mapped to Latin) is an account's or an online
guest's is refused; accounts from before the rules keep logging in; a bad
line of the credentials file is logged with its number and not imported.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial import unittest

from chatservice.auth.credentials import (
    CredentialsFile,
    normalise_username,
    username_problem,
    username_skeleton,
)
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore
from tests.support import ChatHarness, Connection

BAD_NAMES = ["#hash", "-", "*", "..", "../../x", "a:b", "$scrypt$x", "guest", "Guest", "x.", "a__b"]
CYRILLIC_YODA = "y\u043eda"  # Cyrillic о
FULLWIDTH_YODA = "\uff59\uff4f\uff44\uff41"
DECOMPOSED_E = "e\u0301"
COMPOSED_E = "\u00e9"


class UsernameRuleTests(unittest.TestCase):
    """username_problem and username_skeleton themselves."""

    def test_bad_names(self) -> None:
        for name in BAD_NAMES:
            self.assertIsNotNone(username_problem(name), name)

    def test_good_names(self) -> None:
        for name in ("yoda", "Obi-Wan_1.0", "łukasz", "ヨーダ", "r2d2", COMPOSED_E, "नमस्ते"):
            self.assertIsNone(username_problem(name), name)

    def test_not_nfc_is_refused_until_normalised(self) -> None:
        self.assertIsNotNone(username_problem(DECOMPOSED_E))
        self.assertEqual(normalise_username(DECOMPOSED_E), COMPOSED_E)
        self.assertIsNone(username_problem(normalise_username(DECOMPOSED_E)))

    def test_skeletons(self) -> None:
        for name in (CYRILLIC_YODA, FULLWIDTH_YODA, "YODA", "Yοda"):  # last: Greek ο
            self.assertEqual(username_skeleton(name), "yoda", repr(name))
        self.assertEqual(username_skeleton(DECOMPOSED_E), username_skeleton(COMPOSED_E))
        self.assertNotEqual(username_skeleton("yöda"), "yoda")


def register(connection: Connection, name: str, request_id: int = 1) -> dict[str, Any]:
    connection.send_json({"type": "register", "user": name, "password": "secret-1", "id": request_id})
    (reply,) = connection.json()
    return reply


def guest(connection: Connection, name: str) -> dict[str, Any]:
    connection.send_json({"type": "guest", "user": name})
    (reply,) = connection.json()
    return reply


class RegistrationTests(unittest.TestCase):
    """Every name of the issue, registered over JSON and in the text dialogue."""

    def setUp(self) -> None:
        self.harness = ChatHarness(
            {"yoda": "wise", COMPOSED_E: "accent"}, allow_register=True, allow_guests=True
        )

    def test_bad_names_refused(self) -> None:
        connection = self.harness.connect()
        for number, name in enumerate(BAD_NAMES, 1):
            reply = register(connection, name, number)
            self.assertEqual((reply["status"], reply["code"]), (False, "invalid_username"), name)
            self.assertIsNone(self.harness.account(name), name)

    def test_look_alikes_refused(self) -> None:
        connection = self.harness.connect()
        for number, name in enumerate([CYRILLIC_YODA, FULLWIDTH_YODA, "Yoda", DECOMPOSED_E], 1):
            reply = register(connection, name, number)
            self.assertEqual((reply["status"], reply["code"]), (False, "taken"), repr(name))
        self.assertIn("looks too like yoda", register(connection, CYRILLIC_YODA, 9)["additional_info"])
        self.assertIsNone(self.harness.account(CYRILLIC_YODA))
        self.assertIsNone(self.harness.account(DECOMPOSED_E))

    def test_username_check_says_taken_for_a_look_alike(self) -> None:
        connection = self.harness.connect()
        connection.send_json({"type": "register", "user": CYRILLIC_YODA, "id": 1})
        (reply,) = connection.json()
        self.assertTrue(reply["taken"])

    def test_registered_in_nfc(self) -> None:
        connection = self.harness.connect()
        reply = register(connection, "Zo" + DECOMPOSED_E)
        self.assertTrue(reply["status"], reply)
        self.assertIsNotNone(self.harness.account("Zo" + COMPOSED_E))
        self.assertIsNone(self.harness.account("Zo" + DECOMPOSED_E))

    def test_text_dialogue_offers_no_account_for_a_look_alike(self) -> None:
        connection = self.harness.connect()
        connection.send(CYRILLIC_YODA)
        self.assertEqual(
            connection.output(), f"Error. Unknown user {CYRILLIC_YODA}. Please try again.\r\nUsername: "
        )
        self.assertIsNone(self.harness.account(CYRILLIC_YODA))

    def test_login_with_a_decomposed_name(self) -> None:
        """NFC before the lookup: ``e`` + U+0301 logs in to the account ``é``."""
        connection = self.harness.connect()
        connection.send_json({"type": "login", "user": DECOMPOSED_E, "password": "accent"})
        (reply,) = connection.json()
        self.assertEqual((reply["success"], reply["user"]), (True, COMPOSED_E))

    def test_look_alike_of_an_online_guest_refused(self) -> None:
        first = self.harness.connect()
        self.assertTrue(guest(first, "anakin")["success"])
        connection = self.harness.connect()
        reply = register(connection, "\u0430nakin")  # Cyrillic а
        self.assertEqual((reply["status"], reply["code"]), (False, "taken"))


class GuestTests(unittest.TestCase):
    """Guest names follow the same rules."""

    def setUp(self) -> None:
        self.harness = ChatHarness({"yoda": "wise", COMPOSED_E: "accent"}, allow_guests=True)

    def test_bad_names_refused(self) -> None:
        for name in BAD_NAMES:
            reply = guest(self.harness.connect(), name)
            self.assertEqual((reply["success"], reply["reason"]), (False, "invalid_username"), name)

    def test_look_alikes_of_accounts_refused(self) -> None:
        for name in (CYRILLIC_YODA, FULLWIDTH_YODA, DECOMPOSED_E):
            reply = guest(self.harness.connect(), name)
            self.assertEqual(reply["type"], "username_taken", repr(name))

    def test_look_alike_of_an_online_guest_refused(self) -> None:
        self.assertTrue(guest(self.harness.connect(), "anakin")["success"])
        reply = guest(self.harness.connect(), "\u0430nakin")
        self.assertEqual(reply["type"], "username_taken")

    def test_look_alike_free_again_after_the_guest_leaves(self) -> None:
        first = self.harness.connect()
        self.assertTrue(guest(first, "anakin")["success"])
        first.drop()
        reply = guest(self.harness.connect(), "\u0430nakin")
        self.assertEqual((reply["type"], reply["success"]), ("login", True), reply)

    def test_guest_name_in_nfc(self) -> None:
        reply = guest(self.harness.connect(), "Zo" + DECOMPOSED_E)
        self.assertEqual((reply["success"], reply["user"]), (True, "Zo" + COMPOSED_E))


class LegacyAndImportTests(unittest.TestCase):
    """Accounts from before the rules still log in; bad new lines are skipped and logged."""

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self) -> str:
        return "\n".join(
            event["log_format"].format(**event)
            for event in self.events
            if "not imported" in event.get("log_format", "")
        )

    def test_bad_lines_skipped_with_their_numbers(self) -> None:
        harness = ChatHarness(
            {"yoda": "wise", "guest": "g1", "a:b": "ab1", CYRILLIC_YODA: "fake", "hans": "falcon"}
        )
        self.assertIsNotNone(harness.account("yoda"))
        self.assertIsNotNone(harness.account("hans"))
        for name in ("guest", "a:b", CYRILLIC_YODA):
            self.assertIsNone(harness.account(name), name)
        warnings = self.warnings()
        self.assertIn("credentials.txt:2: 'guest' not imported: guest is reserved", warnings)
        self.assertIn("credentials.txt:3: 'a:b' not imported", warnings)
        self.assertIn("credentials.txt:4: 'y\u043eda' not imported: it looks like 'yoda'", warnings)
        self.assertEqual(harness.accounts.usernames(), ["hans", "yoda"])

    def test_credentials_file_notes_problems(self) -> None:
        harness = ChatHarness({"yoda": "wise", "$scrypt$x": "s1"})
        credentials = CredentialsFile.load(harness.credentials_path)
        self.assertEqual(credentials.line_of("$scrypt$x"), 2)
        self.assertIn("$scrypt$x", credentials.problems)
        self.assertNotIn("yoda", credentials.problems)

    def test_existing_store_accounts_still_log_in(self) -> None:
        store = MemoryStore()
        for name in ("#hash", "guest", CYRILLIC_YODA):
            store.add_account(name, "old-pass", None)
        harness = ChatHarness({"hans": "falcon", "yoda": "wise"}, store=LocalStore(store))
        for name in ("#hash", "guest", CYRILLIC_YODA):
            connection = harness.connect()
            connection.send_json({"type": "login", "user": name, "password": "old-pass"})
            (reply,) = connection.json()
            self.assertTrue(reply["success"], (name, reply))
        self.assertIsNotNone(harness.account("hans"))
        # The file's yoda now looks like the store's yоda: not imported.
        self.assertIsNone(harness.account("yoda"))
        self.assertIn("credentials.txt:2: 'yoda' not imported: it looks like 'y\u043eda'", self.warnings())


class PasswdToolTests(unittest.TestCase):
    """chatservice-passwd adds no name the server would not import, but changes any listed one."""

    def test_new_bad_name_refused_listed_one_changed(self) -> None:
        import io
        import tempfile
        from pathlib import Path

        from chatservice.tools.passwd import main

        path = Path(tempfile.mkdtemp()) / "credentials.txt"
        path.write_text("a:b oldpass\n", encoding="utf-8")
        self.assertEqual(main([str(path), "#hash"], io.StringIO("secret-1\nsecret-1\n")), 2)
        self.assertEqual(main([str(path), "a:b"], io.StringIO("secret-1\nsecret-1\n")), 0)
        self.assertEqual(main([str(path), "Zo" + DECOMPOSED_E], io.StringIO("secret-1\nsecret-1\n")), 0)
        names = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()]
        self.assertEqual(names, ["a:b", "Zo" + COMPOSED_E])
