"""A logged-in user: the ``twisted.cred`` avatar, and every command as a method.

The :class:`~chatservice.state.ChatState` makes a :class:`Session` (its session
factory) when a user logs in; the connection calls :meth:`Session.execute` for
each request, which runs the method the command names
(:attr:`~chatservice.commands.Command.handler`).  A command method checks the
request against the shared state, has the state deliver events to other users
(:meth:`~chatservice.state.ChatState.deliver`), and returns the reply event (or
raises :class:`~chatservice.commands.CommandError`).  A command that needs the
store (a direct message kept, a numbered broadcast, a block, ``read``)
returns a Deferred firing with the reply instead, or failing with the
:class:`~chatservice.commands.CommandError`; with a local store it has fired
already when the method returns.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Callable, Iterable

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice import events
from chatservice.auth.accounts import AccountError
from chatservice.commands import (
    COMMANDS,
    OPERATOR_COMMANDS,
    CommandError,
    Request,
    help_for,
    unavailable,
)
from chatservice.delivery import EVERYONE, Audience, Delivery, DeliveryReport
from chatservice.interfaces import ClientConnection, ChatMember, IChatSession
from chatservice.rooms import BROADCAST_CHANNEL, Room
from chatservice.history import PAGE_ENTRIES, cut_page, format_cursor, parse_cursor, start_after
from chatservice.operators import OperatorCommands
from chatservice.state import ChatState
from chatservice.store.interface import HistoryEntry, HistoryPosition, StoredMessage, StoredRoom
from chatservice.timefmt import RelativeTime

log = Logger()

"""The reply to ``help``."""
DEFAULT_AUTO_REPLY = "I am busy right now and will read your message later."
TYPING_SECONDS = 5.0
"""How long a ``typing on`` lasts without another one."""

_PEER_PURPOSES = {
    "private": ("no_peer_port", "private chat"),
    "file": ("no_udp_port", "files"),
}
"""Error code and wording when the other client has no port for a purpose."""

_SHORT_REASONS = {
    "self": "that is you",
    "invalid_user": "no such user",
    "blocked": "has blocked you",
    "mailbox_full": "mailbox full",
    "unavailable": "not possible right now",
}


SPEAKING = frozenset({"message", "send", "broadcast", "room send"})
"""The commands that send a message: refused while the user is muted."""

SHOWN_REMEMBERED = 1024
"""How many shown message ids a session remembers: far more than can be in flight between nodes."""


@implementer(IChatSession)
class Session(OperatorCommands):
    """A logged-in user.

    :param state: the server's chat state.
    :param username: the authenticated user name.
    :param client: the connection to send events to.
    :param logged_in_at: the clock's time at login.
    :param guest: whether this is a guest (no account, no password).
    """

    # One per online user: slots, and nothing built per session that the
    # class can hold (see docs/benchmarks.rst, memory per connection).
    __slots__ = (
        "state", "username", "client", "logged_in_at", "guest", "hidden",
        "auto_reply", "_auto_replied", "_missed", "_typing_expiry", "_typing_to",
        "_fetching", "_shown", "last_logout", "last_active",
    )

    def __init__(
        self,
        state: ChatState,
        username: str,
        client: ClientConnection,
        logged_in_at: float,
        guest: bool = False,
    ) -> None:
        self.state = state
        self.username = username
        self.client = client
        self.logged_in_at = logged_in_at
        self.guest = guest
        self.hidden = False
        self.auto_reply: str | None = None
        """The auto-reply while busy; ``None`` when available."""
        self._auto_replied: set[str] | None = None
        """Who had the auto-reply this busy period (made when first needed)."""
        self._missed = 0
        self._typing_expiry: IDelayedCall | None = None
        self._typing_to: str | None = None
        self._fetching: defer.Deferred[int] | None = None
        """The last fetch of kept messages asked for, if it was not over at once."""
        self._shown: dict[int, None] | None = None
        """Ids of kept messages shown already (the latest :data:`SHOWN_REMEMBERED`;
        made at the first one from another node), so that none is shown twice."""
        self.last_logout: float | None = None
        """When this user was last seen online before this login (``None``: never, or a guest)."""
        self.last_active = logged_in_at
        """When this user last sent a command (``whois`` shows the idle time)."""

    @property
    def busy_now(self) -> bool:
        """Whether this user is busy (messages are kept, broadcasts missed)."""
        return self.auto_reply is not None

    # Life ------------------------------------------------------------------------

    def begin(self) -> None:
        """Announce the login, deliver what was kept while offline, then say
        how many broadcasts and room messages were posted meanwhile."""
        if not self.guest:
            self.last_logout = self.state.last_seen_at(self.username)
        self.state.deliver(
            events.Presence(self.username, True), self.username, EVERYONE, Delivery.PRESENCE
        )
        d = self.deliver_kept()
        if self.last_logout is not None:
            d.addCallback(lambda _: self._tell_missed(self.last_logout))
        self.state.background(
            d, "Delivering the messages kept for {user} failed", user=self.username
        )

    def _tell_missed(self, since: float) -> defer.Deferred[None]:
        """Tell this user how many broadcasts and room messages came after ``since`` (if any).

        Counted on the first page ``read`` would show (at most a page, and
        then "at least"): one bounded store call, however much was posted
        meanwhile.
        """

        def tell(page: events.HistoryList) -> None:
            count = len(page.entries)
            if count and self.state.sessions.get(self.username) is self:
                self.client.deliver(events.MissedSince(count, since, page.next is not None))

        return self._history_page(start_after(since), since).addCallback(tell)

    def _deliver_kept_later(self) -> None:
        """:meth:`deliver_kept`, with nobody waiting for it."""
        self.state.background(
            self.deliver_kept(),
            "Delivering the messages kept for {user} failed",
            user=self.username,
        )

    def end(self) -> None:
        """Log out (idempotent); a pending typing notice ends with it."""
        if self._typing_expiry is not None:
            self._typing_expiry.cancel()
            self._stop_typing()
        self.state.detach(self)

    def execute(self, request: Request) -> events.Event | defer.Deferred[events.Event]:
        """Carry out ``request`` with the method its command names.

        :returns: the reply event, or (for a command that waits for the store
            or a password check) a Deferred firing with it, or failing with
            :class:`~chatservice.commands.CommandError` when the request
            cannot be carried out, or with another error when the store
            fails.  A :class:`~chatservice.events.Disconnected` reply
            (``logout``) means: send it, then close the connection.
        :raises CommandError: when the request cannot be carried out
            (``invalid_command`` for a command with no method here,
            ``message_too_long`` for too long a message, and any error found
            before the store is asked).
        """
        state = self.state
        handler = _HANDLERS.get(request.command)
        self.last_active = state.clock.seconds()
        if handler is None:
            raise CommandError(
                "invalid_command", f"Error. {request.command} is not available here."
            )
        if request.command in OPERATOR_COMMANDS:
            # Before any other check: a non-operator learns nothing of it (and it
            # is counted only once the user is found to be an operator).
            return self.as_operator(handler, request)
        state.metrics.command(request.command)
        if state.moderation.mutes and request.command in SPEAKING:
            state.moderation.check_not_muted(self.username)
        message = request.arguments.get("message")
        limit = self.state.max_message_length
        if isinstance(message, str) and len(message) > limit:
            raise CommandError(
                "message_too_long", f"Error. Messages are limited to {limit} characters."
            )
        return handler(self, **request.arguments)

    def deliver_kept(self) -> defer.Deferred[int]:
        """Fetch, deliver and then forget the direct messages kept for this user: how many.

        The Deferred fires once the store forgot them, which it is told to do
        once they have been written to the connection (:meth:`_once_written`,
        a reactor turn after delivering them), as for :meth:`show_direct`.

        One fetch at a time: one asked for while another is under way starts
        when that one is over (both would deliver the same messages).  If the
        user logged out meanwhile, the messages stay kept.
        """
        return self._in_turn(self._fetch_kept)

    def show_direct(self, message_id: int, event: events.DirectMessage) -> None:
        """Show the direct message ``message_id`` that another node kept for this user, at once.

        The store forgets it afterwards (``take_offline``), once it has been
        written to the connection (:meth:`_once_written`).  A fetch of kept
        messages under way skips it, and it is not shown if a fetch showed it
        first.
        """
        if self._was_shown(message_id):
            return
        self.client.deliver(event)
        self.state.background(
            self._once_written(lambda: self.state.store.take_offline(message_id)),
            "Forgetting a direct message shown to {user} failed", user=self.username,
        )

    def _once_written(self, forget: Callable[[], defer.Deferred[Any]]) -> defer.Deferred[Any]:
        """Call ``forget`` once what was just delivered has been written: its result.

        The connection's output is written at the end of the reactor turn
        (``server/output.py``, a ``callLater(0)``), so ``forget`` (which has
        the store forget kept direct messages just delivered) is called a
        turn after that one: two zero-delay calls on the state's clock.
        Were the store told at once, its thread could forget the messages
        before this node wrote them, and a node killed in between would lose
        acknowledged messages; as it is, a node killed in between shows them
        twice (once now, once kept, at the next login).

        :param forget: what has the store forget the delivered messages.
        """
        clock = self.state.clock
        return task.deferLater(clock, 0, task.deferLater, clock, 0, forget)

    def _was_shown(self, message_id: int) -> bool:
        """Whether ``message_id`` was shown already; if not, it is now remembered as shown."""
        shown = self._shown
        if shown is None:
            shown = self._shown = {}
        elif message_id in shown:
            return True
        shown[message_id] = None
        if len(shown) > SHOWN_REMEMBERED:
            del shown[next(iter(shown))]
        return False

    def _in_turn(self, start: Callable[[], defer.Deferred[int]]) -> defer.Deferred[int]:
        """Run ``start`` once the fetch or take under way (if any) is over."""
        ahead = self._fetching
        if ahead is None or (ahead.called and not ahead.paused):
            d = start()
        else:
            d = defer.Deferred()
            ahead.addBoth(self._run_after, start, d)
        # Over already (a local store): nothing to wait for, nothing kept here.
        self._fetching = None if d.called and not d.paused else d
        return d

    def _run_after(
        self, result: object, start: Callable[[], defer.Deferred[int]], d: defer.Deferred[int]
    ) -> object:
        """The work ahead of ``d`` is over (``result`` is its, passed on): now ``d``'s."""
        start().chainDeferred(d)
        return result

    def _fetch_kept(self) -> defer.Deferred[int]:
        d = self.state.store.offline_messages(self.username)
        return d.addCallback(self._hand_over_kept)

    def _hand_over_kept(self, kept: list[StoredMessage]) -> int | defer.Deferred[int]:
        """Deliver ``kept``, then have the store forget them once they are written.

        :returns: how many were delivered; if any were kept, a Deferred
            firing with it once the store forgot them (:meth:`_once_written`;
            those shown live too), so that a fetch asked for meanwhile waits
            and does not deliver them again.
        """
        if not kept or self.state.sessions.get(self.username) is not self:
            return 0
        if self._shown is not None or self.state.cluster is not None:
            # In a cluster, another node may announce one of these (shown
            # live meanwhile, or to be skipped when it comes).
            fresh = [message for message in kept if not self._was_shown(message.message_id)]
        else:
            fresh = kept
        for message in fresh:
            self.client.deliver(
                events.DirectMessage(
                    message.sender, message.text, message.sent_at, offline=True
                )
            )
        removed = [message.message_id for message in kept]
        d = self._once_written(lambda: self.state.store.remove_offline(removed))

        def not_removed(failure: Failure) -> None:
            log.failure(
                "Forgetting the messages delivered to {user} failed"
                " (they will be delivered again)",
                failure,
                user=self.username,
            )

        return d.addErrback(not_removed).addCallback(lambda _: len(fresh))

    def client_caught_up(self) -> None:
        """The connection drained its backlog: deliver what was kept, unless busy."""
        if not self.busy_now:
            self._deliver_kept_later()

    # What the state calls when delivering ----------------------------------------------

    def auto_reply_to(self, sender: str) -> str | None:
        """This busy user's auto-reply for ``sender``, once per busy period."""
        if self.auto_reply is None:
            return None
        if self._auto_replied is None:
            self._auto_replied = set()
        elif sender in self._auto_replied:
            return None
        self._auto_replied.add(sender)
        return self.auto_reply

    def miss(self, sender: str) -> str | None:
        """Count a broadcast or room message missed while busy; return the auto-reply."""
        self._missed += 1
        return self.auto_reply_to(sender)

    # Lists ---------------------------------------------------------------------------

    def _visible(
        self, usernames: Iterable[str], since: float | None = None
    ) -> events.UserList:
        """The other users in ``usernames`` that have not blocked this user, sorted."""
        has_blocked = self.state.has_blocked
        names = tuple(
            sorted(
                name
                for name in usernames
                if name != self.username and not has_blocked(name, self.username)
            )
        )
        guest_online = self.state.guest_online
        return events.UserList(
            names, since, guests=tuple(name for name in names if guest_online(name))
        )

    def whoelse(self) -> events.UserList:
        """The other users online now."""
        return self._visible(s.username for s in self.state.visible_sessions())

    def whoelsesince(self, seconds: float) -> events.UserList:
        """The other users online at any time in the last ``seconds``."""
        since = self.state.clock.seconds() - seconds
        return self._visible(self.state.seen_since(since), seconds)

    def users(self, onlinetype: str | None) -> events.UserList:
        """The other users online (``online``), or the accounts not online (``offline``).

        Hidden users count as offline.
        """
        if onlinetype != "offline":
            return self.whoelse()
        # Users who blocked this one look offline to it, as whoelse hides them.
        has_blocked = self.state.has_blocked
        online = {
            s.username
            for s in self.state.visible_sessions()
            if not has_blocked(s.username, self.username)
        }
        return events.UserList(
            tuple(
                name
                for name in self.state.accounts.usernames()
                if name not in online and name != self.username
            ),
            online=False,
        )

    def last(self, minutes: float) -> events.UserList:
        """:meth:`whoelsesince` in minutes."""
        if not math.isfinite(minutes * 60):
            raise CommandError("bad_argument", "Error. <minutes> is too large.")
        return self.whoelsesince(minutes * 60)

    def active(self) -> events.ActiveList:
        """The other visible users with their address, peer port and login time."""
        has_blocked = self.state.has_blocked
        return events.ActiveList(
            tuple(
                (s.username, s.client.host, s.client.p2p_port, s.logged_in_at)
                for s in self.state.visible_sessions()
                if s is not self and not has_blocked(s.username, self.username)
            )
        )

    # Direct messages -----------------------------------------------------------------

    def _check_other_user(self, username: str) -> None:
        if username == self.username:
            raise CommandError("self", "Error. You cannot do that to yourself.")
        if not self.state.user_exists(username):
            raise _no_such_user(username)

    def message(self, to: str, message: str) -> defer.Deferred[events.MessageSent]:
        """Send ``message`` to ``to`` now, or keep it until they are back.

        The reply comes once the message is delivered or stored.  A name this
        node does not know is looked up in the store first (an account
        registered on another node a moment ago).
        """
        if to != self.username and not self.state.user_exists(to):
            d = self.state.find_user(to)
            return d.addCallback(self._message_if_found, to, message)
        self._check_other_user(to)
        return self._message(to, message)

    def _message_if_found(
        self, found: bool, to: str, message: str
    ) -> defer.Deferred[events.MessageSent]:
        if not found:
            raise _no_such_user(to)
        return self._message(to, message)

    def _message(self, to: str, message: str) -> defer.Deferred[events.MessageSent]:
        event = events.DirectMessage(self.username, message, self.state.clock.seconds())
        d = self.state.deliver(event, self.username, (to,), Delivery.DIRECT)
        return d.addCallback(self._message_sent, to)

    def _message_sent(self, report: DeliveryReport, to: str) -> events.MessageSent:
        """The reply to a direct message, from its delivery report."""
        if report.refused == "blocked":
            raise CommandError(
                "blocked",
                "Your message could not be delivered as the recipient has blocked you.",
            )
        if report.refused == "mailbox_full":
            raise CommandError(
                "mailbox_full",
                f"Error. {to} has {self.state.max_offline} messages waiting already;"
                " yours was not kept. Try again later.",
            )
        if report.refused == "invalid_user":
            raise CommandError("invalid_user", f"Error. Invalid user {to}.")
        if report.refused == "mailbox_share_full":
            raise CommandError(
                "mailbox_full",
                f"Error. You have {self.state.max_offline_per_sender} messages waiting"
                f" for {to} already; yours was not kept. Try again later.",
            )
        if self._looks_offline(to):
            # Delivered, or kept while busy: either way, as if kept for later.
            return events.MessageSent(to, stored=True)
        return events.MessageSent(
            to,
            stored=bool(report.stored),
            busy=bool(report.busy),
            auto_reply=report.auto_replies[0][1] if report.auto_replies else None,
        )

    def _looks_offline(self, username: str) -> bool:
        """Whether ``username`` is offline or hidden: every reply says "offline" for both."""
        member = self.state.online(username)
        return member is None or member.hidden

    def send(self, to: tuple[str, ...], message: str) -> defer.Deferred[events.SendReport]:
        """Send ``message`` to each of ``to`` as :meth:`message` would; one report, in order."""
        sending = [defer.maybeDeferred(self.message, name, message) for name in to]
        d = defer.DeferredList(sending, consumeErrors=True)
        return d.addCallback(self._send_report, to)

    def _send_report(
        self, results: list[tuple[bool, Any]], to: tuple[str, ...]
    ) -> events.SendReport:
        """The reply to ``send``: what became of the message to each of ``to``."""
        delivered: list[str] = []
        stored: list[str] = []
        failed: list[tuple[str, str]] = []
        auto_replies: list[tuple[str, str]] = []
        for name, (ok, sent) in zip(to, results):
            if not ok:
                error = _command_error(sent, f"A message from {self.username} to {name}")
                failed.append((name, _SHORT_REASONS.get(error.code, error.message)))
                continue
            (stored if sent.stored else delivered).append(name)
            if sent.auto_reply is not None:
                auto_replies.append((name, sent.auto_reply))
        return events.SendReport(
            tuple(delivered), tuple(stored), tuple(failed), tuple(auto_replies)
        )

    # Broadcasts, rooms and history -----------------------------------------------------

    def broadcast(self, message: str) -> defer.Deferred[events.BroadcastSent]:
        """Send ``message`` to every other online user that has not blocked this one.

        It goes out once the store has numbered and kept it.
        """
        return self.state.post(BROADCAST_CHANNEL, self.username, message, self._broadcast_posted)

    def _broadcast_posted(
        self, entry: HistoryEntry
    ) -> events.BroadcastSent | defer.Deferred[events.BroadcastSent]:
        event = events.BroadcastMessage(entry.sender, entry.text, entry.sent_at, entry.seq)
        report = self.state.deliver_message(event, self.username, EVERYONE)
        if isinstance(report, defer.Deferred):  # a cluster: once Redis has answered
            return report.addCallback(_broadcast_sent, entry)
        return _broadcast_sent(report, entry)

    def _my_room(self, room_id: int) -> Room:
        room = self.state.rooms.find(room_id)
        if room is None:
            raise CommandError("no_such_room", f"Error. Room {room_id} does not exist.")
        if self.username not in room.members:
            raise CommandError("not_a_member", f"Error. You are not in room {room_id}.")
        return room

    def room_create(self, members: tuple[str, ...]) -> events.RoomCreated:
        """The room of this user and ``members`` (who must be online): new or existing."""
        others = [name for name in members if name != self.username]
        if not others:
            raise CommandError(
                "bad_argument", "Error. A room needs at least one other user."
            )
        for name in others:
            self._check_other_user(name)
            if self._looks_offline(name):
                raise CommandError("offline", f"Error. {name} is offline.")
            if self.state.has_blocked(name, self.username):
                raise CommandError("blocked", f"Error. {name} has blocked you.")
        d = self.state.rooms.create(frozenset(others) | {self.username})
        return d.addCallback(self._room_created, others)

    def _room_created(
        self, found: tuple[Room, bool], others: list[str]
    ) -> events.RoomCreated:
        """The room is stored: tell the others if it is new; the reply."""
        room, created = found
        names = tuple(sorted(room.members))
        if created:
            self.state.room_changed(StoredRoom(room.room_id, room.members, room.version))
            joined = events.RoomJoined(room.room_id, self.username, names)
            self.state.deliver(joined, self.username, others, Delivery.PLAIN)
        return events.RoomCreated(room.room_id, names, existed=not created)

    def room_send(self, room: int, message: str) -> defer.Deferred[events.RoomPosted]:
        """Send ``message`` to the other online members of room ``room``, once it is kept."""
        found = self._my_room(room)

        def posted(entry: HistoryEntry) -> events.RoomPosted | defer.Deferred[events.RoomPosted]:
            event = events.RoomMessage(room, entry.sender, entry.text, entry.sent_at, entry.seq)
            report = self.state.deliver_message(event, self.username, found.members)
            if isinstance(report, defer.Deferred):  # a cluster: once Redis has answered
                return report.addCallback(_room_posted, room, entry)
            return _room_posted(report, room, entry)

        return self.state.post(found.channel, self.username, message, posted)

    def room_leave(self, room: int) -> defer.Deferred[events.RoomLeft]:
        """Leave room ``room``; once stored, the other members are told; an empty room is removed."""
        found = self._my_room(room)
        d = self.state.rooms.leave(found, self.username)
        return d.addCallback(self._room_left, room, found.members)

    def _room_left(self, stored: StoredRoom, room: int, others: frozenset[str]) -> events.RoomLeft:
        self.state.room_changed(stored)
        notice = events.RoomLeft(room, self.username)
        self.state.deliver(notice, self.username, others, Delivery.PLAIN)
        return events.RoomLeft(room, self.username, not stored.members)

    def list_rooms(self) -> events.RoomList:
        """This user's rooms and their members, each member set once.

        After a ``room leave`` two rooms may have the same members: the one
        ``room create`` gives for them is listed.
        """
        directory = self.state.rooms
        return events.RoomList(
            tuple(
                (room.room_id, tuple(sorted(room.members)))
                for room in directory.of(self.username)
                if directory.first_with(room.members) is room
            )
        )

    def read(self, since: float | RelativeTime | None) -> defer.Deferred[events.HistoryList]:
        """The first page of broadcasts and this user's rooms' messages posted after ``since`` (whole seconds).

        ``since`` may be relative (``10m``, ``today``), or ``None``: since
        this user's last logout.
        """
        since = self._since(since)
        return self._history_page(start_after(since), since)

    def read_next(self, after: str) -> defer.Deferred[events.HistoryList]:
        """The page of ``read`` that starts after the cursor ``after`` (a page's ``next``)."""
        start = parse_cursor(after)
        return self._history_page(start, start.sent_at)

    def _history_page(
        self, start: HistoryPosition, after: float
    ) -> defer.Deferred[events.HistoryList]:
        """The page of this user's channels after ``start`` (see :mod:`chatservice.history`)."""
        rooms = self.state.rooms.of(self.username)
        channels = [BROADCAST_CHANNEL] + [room.channel for room in rooms]
        d = self.state.store.history_page(channels, start, PAGE_ENTRIES + 1)
        return d.addCallback(self._history, after)

    def _since(self, since: float | RelativeTime | None) -> float:
        """``read``'s time as seconds since the epoch."""
        if isinstance(since, RelativeTime):
            return max(0.0, since.resolve(self.state.clock.seconds()))
        if since is None:
            if self.last_logout is None:
                raise CommandError(
                    "bad_argument",
                    "Error. There is no earlier logout of yours to read from; give a time"
                    " (read 10m, read today, read 1 Jun 2022 16:00:00).",
                )
            return self.last_logout
        return since

    def _history(self, found: list[HistoryEntry], after: float) -> events.HistoryList:
        """The reply to ``read``: a page of ``found``, less what is from a blocked user."""
        has_blocked = self.state.has_blocked
        page, covered = cut_page(found, lambda entry: not has_blocked(self.username, entry.sender))
        return events.HistoryList(
            after,
            tuple(
                (entry.channel, entry.seq, entry.sender, entry.text, entry.sent_at)
                for entry in page
            ),
            None if covered is None else format_cursor(covered),
        )

    # Blocks ------------------------------------------------------------------------

    def block(self, target: str) -> defer.Deferred[events.BlockChanged]:
        """Block ``target``: no messages, broadcasts or presence from this user to them.

        In effect at once; the reply comes once it is stored.
        """
        self._check_other_user(target)
        if self.state.has_blocked(self.username, target):
            raise CommandError("already_blocked", f"Error. {target} is already blocked.")
        d = self.state.block(self.username, target)
        return d.addCallback(lambda _: events.BlockChanged(target, blocked=True))

    def list_blocks(self) -> events.BlockList:
        """The users this user has blocked."""
        return events.BlockList(tuple(sorted(self.state.blocked_by(self.username))))

    def unblock(self, target: str) -> defer.Deferred[events.BlockChanged]:
        """Undo :meth:`block`."""
        self._check_other_user(target)
        if not self.state.has_blocked(self.username, target):
            raise CommandError("not_blocked", f"Error. {target} was not blocked.")
        d = self.state.unblock(self.username, target)
        return d.addCallback(lambda _: events.BlockChanged(target, blocked=False))

    # Status --------------------------------------------------------------------------

    def busy(self, message: str | None) -> events.StatusChanged:
        """Become busy: direct messages are kept, senders get ``message`` once."""
        if self.auto_reply is None:
            self._auto_replied = None
            self._missed = 0
        self.auto_reply = message or DEFAULT_AUTO_REPLY
        self.state.member_changed(self)
        return events.StatusChanged("busy", auto_reply=self.auto_reply)

    def idle(self) -> defer.Deferred[events.StatusChanged]:
        """Stop being busy and get the direct messages kept meanwhile (the reply follows them)."""
        if self.auto_reply is None:
            raise CommandError("not_busy", "Error. You are not busy.")
        self.auto_reply = None
        self.state.member_changed(self)
        missed = self._missed
        d = self.deliver_kept()
        return d.addCallback(
            lambda kept: events.StatusChanged("available", kept=kept, missed=missed)
        )

    def hide(self) -> events.StatusChanged:
        """Leave other users' lists and presence notices (messages still arrive)."""
        if not self.hidden:
            self.state.mark_seen(self.username)
            self.hidden = True
            self.state.member_changed(self)
        return events.StatusChanged("hidden")

    def appear(self) -> events.StatusChanged:
        """Undo :meth:`hide`."""
        if self.hidden:
            self.hidden = False
            self.state.member_changed(self)
        return events.StatusChanged("visible")

    def status(self) -> events.StatusReport:
        """This user's busy and visible state and login time."""
        return events.StatusReport(
            self.busy_now,
            self.auto_reply,
            self.hidden,
            self.logged_in_at,
            self.state.clock.seconds(),
        )

    # Typing ------------------------------------------------------------------------

    def _typing_audience(self, to: str | None) -> Audience:
        """Everyone, or ``to`` if this user may contact them."""
        if to is None:
            return EVERYONE
        return (self._reachable(to).username,)

    def typing(self, status: str, to: str | None) -> events.Done:
        """Tell ``to`` (or everyone) that this user is typing; it ends after a few seconds."""
        audience = self._typing_audience(to)
        if status == "off":
            if self._typing_expiry is not None:
                self._typing_expiry.cancel()
                self._stop_typing()
            return events.Done("typing")
        if self._typing_expiry is not None and self._typing_to == to:
            self._typing_expiry.reset(TYPING_SECONDS)
            return events.Done("typing")
        if self._typing_expiry is not None:
            self._typing_expiry.cancel()
            self._stop_typing()
        self._typing_to = to
        self._notify_typing(audience, True)
        self._typing_expiry = self.state.clock.callLater(TYPING_SECONDS, self._stop_typing)
        return events.Done("typing")

    def _notify_typing(self, audience: Audience, typing: bool) -> None:
        notice = events.TypingNotice(self.username, typing)
        self.state.deliver(notice, self.username, audience, Delivery.TYPING)

    def _stop_typing(self) -> None:
        """Tell the audience of the last ``typing on`` that it ended."""
        self._typing_expiry = None
        to, self._typing_to = self._typing_to, None
        self._notify_typing(EVERYONE if to is None else (to,), False)

    # Peer-to-peer introductions -------------------------------------------------------

    def _reachable(self, username: str) -> ChatMember:
        """The session of ``username`` if this user may contact them directly."""
        self._check_other_user(username)
        other = self.state.online(username)
        if other is None or other.hidden:
            raise CommandError("offline", f"Error. {username} is offline.")
        if self.state.has_blocked(username, self.username):
            raise CommandError("blocked", f"Error. {username} has blocked you.")
        return other

    def _introduce(
        self,
        username: str,
        purpose: str,
        port_of: Callable[[ClientConnection], int | None],
        notice: Callable[[str], events.Event],
    ) -> events.PeerAddress:
        """Hand this user ``username``'s port for ``purpose`` and a one-time
        token, and tell ``username``'s client to expect them (``notice(token)``)."""
        other = self._reachable(username)
        port = port_of(other.client)
        if not port:
            code, what = _PEER_PURPOSES[purpose]
            raise CommandError(
                code, f"Error. {username} is not using a client that accepts {what}."
            )
        token = secrets.token_hex(16)
        self.state.deliver(notice(token), self.username, (username,), Delivery.PLAIN)
        return events.PeerAddress(purpose, username, other.client.host, port, token)

    def startprivate(self, target: str) -> events.PeerAddress:
        """Introduce this user's client to ``target``'s peer listener."""
        return self._introduce(
            target,
            "private",
            lambda client: client.p2p_port,
            lambda token: events.PrivateRequest(self.username, token),
        )

    def sendfile(self, to: str, filename: str, size: int | None) -> events.PeerAddress:
        """Introduce this user's client to ``to``'s UDP file receiver."""
        return self._introduce(
            to,
            "file",
            lambda client: client.udp_port,
            lambda token: events.FileIncoming(self.username, filename, size, token),
        )

    # Connection-level commands ---------------------------------------------------

    def help(self, command: str | None = None) -> defer.Deferred[events.HelpText]:
        """Every command's usage and summary, or one command's (``help COMMAND``).

        The operator commands are listed to operators only (the store says who is one).
        """
        d = self.state.moderation.is_operator(self.username)
        return d.addCallback(lambda operator: help_for(command, operator))

    def logout(self) -> events.Disconnected:
        """Say goodbye; the connection sends it, then closes (which ends this session)."""
        return events.Disconnected("logout", f"Goodbye, {self.username}!")

    def passwd(self, old: str | None, new: str | None) -> defer.Deferred[events.Event]:
        """Change this user's password: ``PasswordChanged``, or the error reply.

        A text connection asks for both when neither is given (its ``passwd``
        prompts); here both are needed.
        """
        if old is None or new is None:
            raise CommandError(
                "bad_argument", "Error. Usage: passwd <old password> <new password>"
            )
        passwords = self.state.passwords
        if passwords is None:
            return defer.succeed(
                events.ErrorReply("unavailable", "Error. Passwords cannot be changed here.")
            )

        def refused(failure: Failure) -> events.ErrorReply:
            failure.trap(AccountError)
            error: AccountError = failure.value
            return events.ErrorReply(error.code, error.message)

        d = passwords.change_password(self.username, old, new)
        return d.addCallbacks(lambda _: events.PasswordChanged(), refused)


def _broadcast_sent(report: DeliveryReport, entry: HistoryEntry) -> events.BroadcastSent:
    """The reply to ``broadcast``: the kept message ``entry`` and what its fan-out did."""
    return events.BroadcastSent(
        report.delivered, report.skipped, entry.seq, entry.sent_at, report.auto_replies,
        report.unreached,
    )


def _room_posted(report: DeliveryReport, room: int, entry: HistoryEntry) -> events.RoomPosted:
    """The reply to ``room send``: the kept message ``entry`` and what its fan-out did."""
    return events.RoomPosted(
        room, entry.seq, entry.sent_at, report.delivered, report.skipped, report.unreached
    )


def _no_such_user(username: str) -> CommandError:
    return CommandError("invalid_user", f"Error. Invalid user {username}.")


def _command_error(failure: Failure, what: str) -> CommandError:
    """The :class:`CommandError` that ``failure`` carries, or ``unavailable`` (logged) for any other."""
    if failure.check(CommandError):
        return failure.value
    log.failure("{what} failed", failure, what=what)
    return unavailable()


_HANDLERS: dict[str, Callable[..., events.Event | defer.Deferred[events.Event]]] = {
    command.name: getattr(Session, command.handler) for command in COMMANDS
}
"""Each command's name to the :class:`Session` method it names (checked at import)."""
