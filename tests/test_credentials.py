"""Tests for :mod:`chatservice.auth.credentials` (the accounts file, user name rules) and the password checker.

Files are written under a fresh temporary working directory (``self.mktemp()``
makes its directories relative to the current directory, which under pytest
would otherwise be the project).
"""

from __future__ import annotations

import hmac
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.trial import unittest

import chatservice
from chatservice.auth.credentials import (
    MAX_USERNAME_LENGTH,
    CredentialsError,
    CredentialsFile,
    username_problem,
    write_entry,
)
from chatservice.auth.directory import CredentialsChecker
from chatservice.auth.errors import UnknownUser, WrongPassword
from chatservice.auth.passwords import hash_password
from chatservice.auth.scram import ScramKeys
from tests.support import memory_accounts

SAMPLE_ACCOUNTS = {
    "yoda": "wise",
    "hans": "falcon",
    "luke": "jedi",
    "obiwan": "kenobi",
    "leia": "princess",
}

PACKAGED_FILE = Path(chatservice.__file__).resolve().parent / "data" / "credentials.txt"
ETC_FILE = Path(__file__).resolve().parent.parent / "etc" / "credentials.txt"

SPACES_OR_CONTROL = "a user name cannot contain spaces or control characters"


class TempDirTestCase(unittest.TestCase):
    """Runs each test in its own temporary working directory."""

    def setUp(self) -> None:
        workdir = tempfile.mkdtemp(prefix="chatservice-test-")
        self.addCleanup(shutil.rmtree, workdir, True)
        previous = os.getcwd()
        os.chdir(workdir)
        self.addCleanup(os.chdir, previous)

    def write(self, content: str | bytes) -> Path:
        """Write ``content`` (str as UTF-8) to a new temporary file and return its path."""
        path = Path(self.mktemp())
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)
        return path

    def assertLoadError(self, path: Path, message: str) -> None:
        error = self.assertRaises(CredentialsError, CredentialsFile.load, path)
        self.assertEqual(str(error), message)


class LoadTests(TempDirTestCase):
    """CredentialsFile.load reads ``username password`` lines and reports bad ones."""

    def test_comments_and_blank_lines(self) -> None:
        path = self.write(
            "# accounts\n"
            "\n"
            "   \n"
            "yoda wise\n"
            "  # an indented comment\n"
            "\thans   falcon  \n"
        )
        accounts = CredentialsFile.load(path)
        self.assertEqual(accounts.path, path)
        self.assertEqual(accounts.usernames(), ["hans", "yoda"])
        self.assertEqual(accounts.secret("yoda"), "wise")
        self.assertEqual(accounts.secret("hans"), "falcon")

    def test_password_with_spaces(self) -> None:
        path = self.write("leia may the force  be with you\nluke a\tb\n")
        accounts = CredentialsFile.load(path)
        self.assertEqual(accounts.secret("leia"), "may the force  be with you")
        self.assertEqual(accounts.secret("luke"), "a\tb")

    def test_path_as_string(self) -> None:
        path = self.write("yoda wise\n")
        accounts = CredentialsFile.load(str(path))
        self.assertEqual(accounts.path, path)
        self.assertTrue(accounts.exists("yoda"))

    def test_crlf_and_no_final_newline(self) -> None:
        accounts = CredentialsFile.load(self.write("yoda wise\r\nhans falcon"))
        self.assertEqual(accounts.secret("yoda"), "wise")
        self.assertEqual(accounts.secret("hans"), "falcon")

    def test_non_ascii(self) -> None:
        accounts = CredentialsFile.load(self.write("łukasz pässwörd\n"))
        self.assertEqual(accounts.secret("łukasz"), "pässwörd")

    def test_names_are_case_sensitive(self) -> None:
        accounts = CredentialsFile.load(self.write("yoda wise\nYoda other\n"))
        self.assertEqual(accounts.usernames(), ["Yoda", "yoda"])
        self.assertFalse(accounts.exists("YODA"))

    def test_empty_file(self) -> None:
        accounts = CredentialsFile.load(self.write(""))
        self.assertEqual(accounts.usernames(), [])

    def test_duplicate_user(self) -> None:
        path = self.write("yoda wise\n# comment\n\nhans falcon\nyoda other\n")
        self.assertLoadError(path, f"{path}:5: yoda is listed twice")

    def test_missing_file(self) -> None:
        path = Path(self.mktemp())
        self.assertLoadError(path, f"{path}: cannot read: No such file or directory")

    def test_directory(self) -> None:
        path = Path(self.mktemp())
        path.mkdir()
        self.assertLoadError(path, f"{path}: cannot read: Is a directory")

    def test_not_utf8(self) -> None:
        path = self.write(b"yoda wise\nhans f\xe4lcon\n")
        self.assertLoadError(path, f"{path}: not valid UTF-8")

    def test_name_only(self) -> None:
        path = self.write("yoda wise\n\nhans\n")
        self.assertLoadError(path, f"{path}:3: expected 'username password'")

    def test_name_only_with_trailing_space(self) -> None:
        path = self.write("hans   \n")
        self.assertLoadError(path, f"{path}:1: expected 'username password'")

    def test_bad_user_name(self) -> None:
        long_name = "x" * (MAX_USERNAME_LENGTH + 1)
        path = self.write(f"yoda wise\n{long_name} pw\n")
        self.assertLoadError(path, f"{path}:2: a user name has at most 32 characters")

    def test_hashed_secret(self) -> None:
        hashed = hash_password("wise", log2_n=4)
        accounts = CredentialsFile.load(self.write(f"yoda {hashed}\nhans falcon\n"))
        self.assertEqual(accounts.secret("yoda"), hashed)
        self.assertEqual(accounts.secret("hans"), "falcon")

    def test_malformed_hash(self) -> None:
        path = self.write("yoda wise\nhans $scrypt$ln=14,r=8$abc$def\n")
        self.assertLoadError(path, f"{path}:2: malformed scrypt hash for hans")

    def test_hash_parameters_out_of_range(self) -> None:
        path = self.write("hans $scrypt$ln=40,r=8,p=1$c2FsdA$a2V5\n")
        self.assertLoadError(path, f"{path}:1: scrypt parameters out of range for hans")

    def test_control_character_in_name(self) -> None:
        path = self.write("yo\x01da wise\n")
        self.assertLoadError(path, f"{path}:1: {SPACES_OR_CONTROL}")


class ScramFieldTests(TempDirTestCase):
    """A hashed entry may carry SCRAM keys after the hash."""

    def setUp(self) -> None:
        super().setUp()
        self.hashed = hash_password("wise", log2_n=4)
        self.keys = ScramKeys.derive("wise")

    def test_hash_and_keys(self) -> None:
        path = self.write(f"yoda {self.hashed}  {self.keys.format()}\nhans {self.hashed}\nluke jedi\n")
        accounts = CredentialsFile.load(path)
        self.assertEqual(accounts.secret("yoda"), self.hashed)
        self.assertEqual(accounts.scram_keys("yoda"), self.keys)
        self.assertEqual(accounts.secret("hans"), self.hashed)
        self.assertIsNone(accounts.scram_keys("hans"), "a hash from before SCRAM")
        self.assertIsNone(accounts.scram_keys("luke"), "plain entries have none in the file")
        self.assertIsNone(accounts.scram_keys("vader"))

    def test_plain_password_looking_like_keys(self) -> None:
        text = f"wise {self.keys.format()}"
        accounts = CredentialsFile.load(self.write(f"yoda {text}\n"))
        self.assertEqual(accounts.secret("yoda"), text)
        self.assertIsNone(accounts.scram_keys("yoda"))

    def test_malformed_keys(self) -> None:
        good = self.keys.format()
        for bad, problem in [
            ("SCRAM-SHA-256$4096:abc", "malformed SCRAM keys"),
            (good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"), "malformed SCRAM keys"),
            (good.replace("4096", "12", 1), "malformed SCRAM keys: SCRAM iterations must be 4096 to 1000000"),
            (good[:-1], "malformed SCRAM keys"),
            (good[:-8], "malformed SCRAM keys: SCRAM-SHA-256 keys have 32 bytes"),
            (f"{good} {good}", "expected a hash and SCRAM keys"),
        ]:
            path = self.write(f"hans falcon\nyoda {self.hashed} {bad}\n")
            self.assertLoadError(path, f"{path}:2: {problem} for yoda")

    def test_malformed_hash_with_keys(self) -> None:
        path = self.write(f"yoda $scrypt$ln=14,r=8$abc$def {self.keys.format()}\n")
        self.assertLoadError(path, f"{path}:1: malformed scrypt hash for yoda")

    def test_write_entry_round_trip(self) -> None:
        path = self.write("# accounts\nyoda wise\nhans falcon\n")
        write_entry(path, "yoda", self.hashed, self.keys)
        write_entry(path, "luke", self.hashed, self.keys)
        self.assertEqual(
            path.read_text(),
            f"# accounts\nyoda {self.hashed} {self.keys.format()}\nhans falcon\n"
            f"luke {self.hashed} {self.keys.format()}\n",
        )
        accounts = CredentialsFile.load(path)
        self.assertEqual(accounts.scram_keys("yoda"), self.keys)
        self.assertEqual(accounts.scram_keys("luke"), self.keys)
        write_entry(path, "yoda", self.hashed)
        self.assertIsNone(CredentialsFile.load(path).scram_keys("yoda"))

    def test_keys_only_next_to_a_hash(self) -> None:
        path = self.write("yoda wise\n")
        self.assertRaises(ValueError, write_entry, path, "yoda", "wiser", self.keys)
        self.assertEqual(path.read_text(), "yoda wise\n")

    def test_entries(self) -> None:
        accounts = CredentialsFile(Path("mem.txt"), {"yoda": self.hashed, "hans": "falcon"}, {"yoda": self.keys})
        self.assertEqual(
            accounts.entries(), [("hans", "falcon", None), ("yoda", self.hashed, self.keys)]
        )


class LookupTests(unittest.TestCase):
    """exists, secret and usernames on an in-memory CredentialsFile."""

    def setUp(self) -> None:
        self.accounts = CredentialsFile(Path("mem.txt"), dict(SAMPLE_ACCOUNTS))

    def test_exists(self) -> None:
        self.assertTrue(self.accounts.exists("yoda"))
        self.assertFalse(self.accounts.exists("vader"))
        self.assertFalse(self.accounts.exists(""))

    def test_secret(self) -> None:
        self.assertEqual(self.accounts.secret("leia"), "princess")
        self.assertIsNone(self.accounts.secret("vader"))

    def test_usernames_sorted(self) -> None:
        self.assertEqual(
            self.accounts.usernames(), ["hans", "leia", "luke", "obiwan", "yoda"]
        )


class UsernameProblemTests(unittest.TestCase):
    """username_problem: what a user name may be."""

    def test_valid(self) -> None:
        for name in ("yoda", "Obi-Wan_1.0", "łukasz", "x" * MAX_USERNAME_LENGTH, "ヨーダ"):
            self.assertIsNone(username_problem(name), name)

    def test_empty(self) -> None:
        self.assertEqual(username_problem(""), "a user name cannot be empty")

    def test_too_long(self) -> None:
        self.assertEqual(MAX_USERNAME_LENGTH, 32)
        self.assertEqual(
            username_problem("x" * 33), "a user name has at most 32 characters"
        )

    def test_spaces_and_control_characters(self) -> None:
        for name in (
            "yo da",
            "yoda\t",
            "\nyoda",
            "yo\u00a0da",  # no-break space
            "yo\x00da",
            "yo\x1bda",
            "yo\x7fda",
            "yo\x85da",  # C1 control
            "yo\u200bda",  # zero-width space (format character)
            "yo\u202eda",  # right-to-left override
            "yo\ud800da",  # lone surrogate
        ):
            self.assertEqual(username_problem(name), SPACES_OR_CONTROL, repr(name))


class CheckerTests(unittest.TestCase):
    """CredentialsChecker fails with UnknownUser or WrongPassword, comparing in constant time."""

    def setUp(self) -> None:
        accounts = memory_accounts({"yoda": "wise", "łukasz": "pässwörd"})
        self.checker = CredentialsChecker(accounts)
        self.compared: list[tuple[bytes, bytes]] = []
        real_compare = hmac.compare_digest

        def recording_compare(a: bytes, b: bytes) -> bool:
            self.compared.append((a, b))
            return real_compare(a, b)

        self.patch(hmac, "compare_digest", recording_compare)

    def test_interfaces(self) -> None:
        self.assertTrue(ICredentialsChecker.providedBy(self.checker))
        self.assertEqual(self.checker.credentialInterfaces, (IUsernamePassword,))

    def test_right_password(self) -> None:
        d = self.checker.requestAvatarId(UsernamePassword("yoda", "wise"))
        self.assertEqual(self.successResultOf(d), "yoda")
        self.assertEqual(self.compared, [(b"wise", b"wise")])

    def test_non_ascii_password(self) -> None:
        d = self.checker.requestAvatarId(UsernamePassword("łukasz", "pässwörd"))
        self.assertEqual(self.successResultOf(d), "łukasz")
        self.assertEqual(
            self.compared, [("pässwörd".encode(), "pässwörd".encode())]
        )

    def test_wrong_password(self) -> None:
        d = self.checker.requestAvatarId(UsernamePassword("yoda", "Wise"))
        failure = self.failureResultOf(d, WrongPassword)
        self.assertIsInstance(failure.value, UnauthorizedLogin)
        self.assertEqual(failure.value.args, ("yoda",))
        self.assertEqual(self.compared, [(b"wise", b"Wise")])

    def test_prefix_is_wrong(self) -> None:
        self.failureResultOf(
            self.checker.requestAvatarId(UsernamePassword("yoda", "wis")), WrongPassword
        )
        self.failureResultOf(
            self.checker.requestAvatarId(UsernamePassword("yoda", "wise ")), WrongPassword
        )

    def test_plain_entries_not_run_in_thread(self) -> None:
        runs: list[Any] = []

        def runner(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            runs.append(f)
            return defer.maybeDeferred(f, *args)

        checker = CredentialsChecker(memory_accounts({"yoda": "wise"}), runner)
        self.successResultOf(checker.requestAvatarId(UsernamePassword("yoda", "wise")))
        self.failureResultOf(checker.requestAvatarId(UsernamePassword("yoda", "x")), WrongPassword)
        self.assertEqual(runs, [])

    def test_hashed_entry_verified_by_runner(self) -> None:
        pending: list[tuple[Callable[..., Any], tuple[Any, ...], defer.Deferred[Any]]] = []

        def runner(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            d: defer.Deferred[Any] = defer.Deferred()
            pending.append((f, args, d))
            return d

        hashed = hash_password("wise", log2_n=4)
        checker = CredentialsChecker(memory_accounts({"yoda": hashed}), runner)
        right = checker.requestAvatarId(UsernamePassword("yoda", "wise"))
        wrong = checker.requestAvatarId(UsernamePassword("yoda", "wisE"))
        self.assertNoResult(right)
        self.assertNoResult(wrong)
        self.assertEqual([args for _f, args, _d in pending], [("wise", hashed), ("wisE", hashed)])
        for f, args, d in pending:
            d.callback(f(*args))
        self.assertEqual(self.successResultOf(right), "yoda")
        self.failureResultOf(wrong, WrongPassword)

    def test_hashed_entry_default_runner(self) -> None:
        hashed = hash_password("pässwörd", log2_n=4)
        checker = CredentialsChecker(memory_accounts({"yoda": hashed}))
        d = checker.requestAvatarId(UsernamePassword("yoda", "pässwörd"))
        self.assertEqual(self.successResultOf(d), "yoda")
        self.assertEqual(len(self.compared), 1)
        self.failureResultOf(
            checker.requestAvatarId(UsernamePassword("yoda", "passwörd")), WrongPassword
        )

    def test_unknown_user(self) -> None:
        d = self.checker.requestAvatarId(UsernamePassword("vader", "wise"))
        failure = self.failureResultOf(d, UnknownUser)
        self.assertIsInstance(failure.value, UnauthorizedLogin)
        self.assertEqual(failure.value.args, ("vader",))
        self.assertEqual(self.compared, [])


class SampleFileTests(unittest.TestCase):
    """The shipped sample accounts: the package's copy and etc/ agree."""

    def test_files_identical(self) -> None:
        self.assertEqual(PACKAGED_FILE.read_bytes(), ETC_FILE.read_bytes())

    def test_sample_accounts(self) -> None:
        for path in (PACKAGED_FILE, ETC_FILE):
            accounts = CredentialsFile.load(path)
            self.assertEqual(
                {name: accounts.secret(name) for name in accounts.usernames()},
                SAMPLE_ACCOUNTS,
            )
