"""Tests for :meth:`chatservice.session.Session.execute`: dispatch by the command table,
the message length limit, and the connection-level commands (help, logout, passwd).
"""

from __future__ import annotations


from twisted.internet import defer

from chatservice import events
from chatservice.auth.accounts import AccountError, AccountManager
from chatservice.auth.passwords import verify_password
from chatservice.commands import COMMANDS, Request
from chatservice.session import Session
from chatservice.state import ChatState
from chatservice.store.local import LocalStore
from tests.support import memory_accounts, stored_account
from tests.test_state import RecordingClient, StateTestCase, summary


class FakePasswords:
    """A :class:`~chatservice.interfaces.PasswordChanger` that answers with ``outcome``."""

    def __init__(self, outcome: Exception | None = None) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, str]] = []

    def change_password(self, username: str, old: str, new: str) -> defer.Deferred[None]:
        self.calls.append((username, old, new))
        if self.outcome is not None:
            return defer.fail(self.outcome)
        return defer.succeed(None)


class DispatchTests(StateTestCase):
    """Each command runs the Session method its table entry names."""

    def test_every_command_has_a_callable_handler(self) -> None:
        for command in COMMANDS:
            self.assertTrue(callable(getattr(Session, command.handler, None)), command.name)

    def test_handlers_are_distinct(self) -> None:
        handlers = [command.handler for command in COMMANDS]
        self.assertEqual(len(handlers), len(set(handlers)))

    def test_dispatch_by_name(self) -> None:
        yoda, _hans = self.online("yoda", "hans")
        self.assertEqual(summary(yoda.execute(Request("rooms"))), ("RoomList", ()))
        d = yoda.execute(Request("room create", {"members": ("hans",)}))
        reply = self.successResultOf(d)
        self.assertEqual(summary(reply), ("RoomCreated", 1, ("hans", "yoda"), False))

    def test_unknown_command(self) -> None:
        (yoda,) = self.online("yoda")
        self.assertCommandError(
            "invalid_command",
            "Error. room_create is not available here.",
            yoda.execute,
            Request("room_create", {"members": ("hans",)}),
        )

    def test_message_too_long(self) -> None:
        self.state.max_message_length = 5
        yoda, _hans = self.online("yoda", "hans")
        for request in (
            Request("broadcast", {"message": "123456"}),
            Request("message", {"to": "hans", "message": "123456"}),
            Request("busy", {"message": "123456"}),
        ):
            self.assertCommandError(
                "message_too_long",
                "Error. Messages are limited to 5 characters.",
                yoda.execute,
                request,
            )
        self.assertEqual(self.clients["hans"].take(), [])
        reply = self.successResultOf(yoda.execute(Request("broadcast", {"message": "12345"})))
        self.assertEqual(reply.delivered, 1)


class ConnectionCommandTests(StateTestCase):
    """help, logout and passwd through execute."""

    def setUp(self) -> None:
        super().setUp()
        self.passwords = FakePasswords()
        self.state.passwords = self.passwords
        (self.yoda,) = self.online("yoda")

    def passwd(self) -> events.Event:
        d = self.yoda.execute(Request("passwd", {"old": "wise", "new": "wiser"}))
        self.assertIsInstance(d, defer.Deferred)
        return self.successResultOf(d)

    def test_help_lists_every_command(self) -> None:
        """Every command but the operators' (yoda is no operator)."""
        reply = self.successResultOf(self.yoda.execute(Request("help")))
        self.assertIsInstance(reply, events.HelpText)
        self.assertEqual(
            reply.commands, tuple((c.usage, c.summary) for c in COMMANDS if not c.operator)
        )

    def test_logout_says_goodbye_and_leaves_closing_to_the_connection(self) -> None:
        reply = self.yoda.execute(Request("logout"))
        self.assertEqual(summary(reply), ("Disconnected", "logout", "Goodbye, yoda!", None))
        self.assertIn("yoda", self.state.sessions)

    def test_passwd_changed(self) -> None:
        self.assertEqual(summary(self.passwd()), ("PasswordChanged",))
        self.assertEqual(self.passwords.calls, [("yoda", "wise", "wiser")])

    def test_passwd_refused(self) -> None:
        self.passwords.outcome = AccountError("wrong_password", "Error. Not that.")
        self.assertEqual(
            summary(self.passwd()), ("ErrorReply", "wrong_password", "Error. Not that.")
        )

    def test_passwd_other_failure_is_not_an_answer(self) -> None:
        self.passwords.outcome = OSError("disk full")
        d = self.yoda.execute(Request("passwd", {"old": "wise", "new": "wiser"}))
        self.failureResultOf(d, OSError)

    def test_passwd_without_a_password_changer(self) -> None:
        self.state.passwords = None
        self.assertEqual(
            summary(self.passwd()),
            ("ErrorReply", "unavailable", "Error. Passwords cannot be changed here."),
        )

    def test_passwd_through_the_account_manager(self) -> None:
        """The server's PasswordChanger: an AccountManager on the accounts in the store."""
        accounts = memory_accounts({"hans": "falcon"}, self.clock)
        state = ChatState(
            LocalStore(self.store),
            accounts,
            self.clock,
            session_factory=Session,
            passwords=AccountManager(accounts),
        )
        hans = state.attach("hans", RecordingClient())
        d = hans.execute(Request("passwd", {"old": "wrong", "new": "wiser"}))
        self.assertEqual(
            summary(self.successResultOf(d)),
            ("ErrorReply", "wrong_password", "Error. Your current password is not that."),
        )
        d = hans.execute(Request("passwd", {"old": "falcon", "new": "wiser"}))
        self.assertEqual(summary(self.successResultOf(d)), ("PasswordChanged",))
        account = stored_account(accounts.store.local, "hans")
        assert account is not None
        self.assertTrue(verify_password("wiser", account.secret))
