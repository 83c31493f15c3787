"""The shared chat state: who is online, who blocked whom, rooms, what waits for whom.

One :class:`ChatState` per server holds the online sessions (made by the
session factory it is given, :class:`~chatservice.session.Session` in a
server), the block lists and the rooms, and writes what must last through an
:class:`~chatservice.store.interface.IChatStore`.  It decides who hears what
(:meth:`ChatState.deliver`), and never touches a transport: it hands
:mod:`chatservice.events` to each session's
:class:`~chatservice.interfaces.ClientConnection` (the connection), which renders
and writes them.

The store answers with Deferreds.  What is in memory (online sessions, block
lists, rooms, last-seen times) changes at once; whatever depends on the store
(numbering a message, keeping a direct message, a block being durable) goes on
when its Deferred fires, which with a local store is before the call returns.
A store write nobody waits for (a last-seen time, the removal of delivered
messages) goes through :meth:`ChatState.background`: its failure is logged,
and :meth:`ChatState.writes_done` lets the service's stop wait for it.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable, Iterator, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.credentials import username_skeleton
from chatservice.auth.errors import LoginUnavailable
from chatservice.delivery import (
    EVERYONE,
    NOTHING,
    Audience,
    Delivery,
    DeliveryReport,
)
from chatservice.interfaces import (
    ClusterPeers,
    AccountDirectory,
    ActivityRecorder,
    ClientConnection,
    ChatMember,
    Fanout,
    IChatSession,
    NoActivityRecorder,
    OneByOne,
    PasswordChanger,
)
from chatservice.metrics import ChatMetrics
from chatservice.moderation import Moderation
from chatservice.rooms import BROADCAST_CHANNEL, RoomDirectory
from chatservice.store.interface import HistoryEntry, IChatStore, KeptOffline, StoredRoom

__all__ = ["AlreadyLoggedIn", "ClientConnection", "ChatState", "IChatSession", "SessionFactory"]

log = Logger()
_T = TypeVar("_T")

DEFAULT_MAX_MESSAGE_LENGTH = 8192
_NOBODY: frozenset[str] = frozenset()

SessionFactory = Callable[["ChatState", str, ClientConnection, float, bool], ChatMember]
"""Makes the session of a user who logs in: ``(state, username, client,
logged_in_at, guest)``; :class:`~chatservice.session.Session` is one."""


class AlreadyLoggedIn(Exception):
    """The user has a session on another connection."""


class ChatState:
    """Every online session, the block lists, rooms and last-seen times.

    :param store: where blocks, last-seen times, offline messages, rooms and
        history are kept.
    :param accounts: which user names exist (loaded by :meth:`load`).
    :param clock: the time source for timestamps (the reactor, or a test Clock).
    :param activity: where logins, logouts and posts are reported for the
        human-readable logs.
    :param max_offline: messages kept for one user at most; past it, new ones
        are refused (the oldest are kept).
    :param max_offline_per_sender: messages kept for one user from one sender
        at most (default: a quarter of ``max_offline``, at least 1), so that
        one sender cannot fill a mailbox and shut the others out.
    :param session_factory: makes the session of a user who logs in.
    :param passwords: where sessions change their user's password (``None``:
        passwords cannot be changed).
    :param max_message_length: the longest message text a command may carry,
        in characters.
    :param metrics: where messages and deliveries are counted (default: a
        registry of its own).
    """

    def __init__(
        self,
        store: IChatStore,
        accounts: AccountDirectory,
        clock: IReactorTime,
        activity: ActivityRecorder | None = None,
        max_offline: int = 100,
        *,
        session_factory: SessionFactory,
        passwords: PasswordChanger | None = None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        max_offline_per_sender: int | None = None,
        metrics: ChatMetrics | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.activity = activity if activity is not None else NoActivityRecorder()
        self.max_offline = max_offline
        self.max_offline_per_sender = (
            max(1, max_offline // 4) if max_offline_per_sender is None else max_offline_per_sender
        )
        self.session_factory = session_factory
        self.passwords = passwords
        self.max_message_length = max_message_length
        self.sessions: dict[str, ChatMember] = {}
        self.fanout: Fanout = OneByOne()
        """Where an event for every online user goes: the server's
        :class:`~chatservice.server.fanout.SharedFanout` (set before anyone logs in)."""
        self._busy: dict[str, ChatMember] = {}
        """The online users who are busy (they miss broadcasts)."""
        self._guest_skeletons: dict[str, str] = {}
        """The skeleton of each guest online on this node, to its name (look-alikes are refused)."""
        self.claiming: set[str] = set()
        """Names whose login waits for its claim in the cluster (not online yet)."""
        self.rooms = RoomDirectory(store)
        self._blocked_by: dict[str, set[str]] = {}
        self._blockers_of: dict[str, set[str]] = {}
        self._touched_blocks: set[tuple[str, str]] | None = None
        """The blocks changed while :meth:`reload_shared` reads them (``None``: not reading)."""
        self._last_seen: dict[str, float] = {}
        self._writes: set[defer.Deferred[Any]] = set()
        """Store writes under way that nobody waits for (see :meth:`background`)."""
        self.cluster: ClusterPeers | None = None
        """The other nodes (``--redis``), or ``None`` for a server on its own."""
        self.metrics = ChatMetrics() if metrics is None else metrics
        """Where messages, deliveries and commands are counted."""
        self._removing: set[str] = set()
        """Users being removed (:meth:`remove_user`): their logout records no last-seen time."""

        self.moderation = Moderation(self)
        """The operators, the bans in force and the mutes."""
        self.rehash: Callable[[str], defer.Deferred[list[str]]] | None = None
        """Reloads the server's configuration for an operator's ``rehash``: given who
        asked, fires with lines saying what changed (``None``: reloading is not available)."""

    def load(self) -> defer.Deferred[None]:
        """Load the accounts, then read the block lists, last-seen times, rooms, operators and
        bans from the store; fires when done."""
        d = self.accounts.load()
        d.addCallback(lambda _: self.store.blocks())
        d.addCallback(self._load_blocks)
        d.addCallback(lambda _: self.store.last_seen())
        d.addCallback(self._load_last_seen)
        d.addCallback(lambda _: self.rooms.load())
        d.addCallback(lambda _: self.moderation.load())
        return d

    def _load_blocks(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._blocked_by.clear()
        self._blockers_of.clear()
        for blocker, blocked in pairs:
            self._set_block(blocker, blocked, True)

    def _load_last_seen(self, seen: Iterable[tuple[str, float]]) -> None:
        self._last_seen = dict(seen)

    def reload_shared(self) -> defer.Deferred[None]:
        """Read the blocks, last-seen times and rooms from the store again; fires when done.

        For a node of a cluster that was away from Redis: the other nodes'
        announcements of their changes may have been lost meanwhile, but the
        changes are in the store.  A block or room that changed here (or was
        announced) while the store was being read is left as it is now: it is
        newer than what the read may have found.
        """
        touched: set[tuple[str, str]] = set()
        self._touched_blocks = touched
        blocks = self.store.blocks().addCallback(self._reloaded_blocks, touched)
        seen = self.store.last_seen().addCallback(self._reloaded_last_seen)
        rooms = self.rooms.reload()
        d = defer.gatherResults([blocks, seen, rooms], consumeErrors=True)
        return d.addBoth(self._reloaded, touched)

    def _reloaded(self, result: object, touched: set[tuple[str, str]]) -> object:
        """The reads of :meth:`reload_shared` are over: block changes are no longer tracked."""
        if self._touched_blocks is touched:
            self._touched_blocks = None
        if isinstance(result, Failure):
            return result.value.subFailure if result.check(defer.FirstError) else result
        return None

    def _reloaded_blocks(
        self, pairs: Iterable[tuple[str, str]], touched: set[tuple[str, str]]
    ) -> None:
        stored = {(blocker, blocked) for blocker, blocked in pairs}
        here = {
            (blocker, blocked)
            for blocker, blocked_users in self._blocked_by.items()
            for blocked in blocked_users
        }
        for pair in stored - here - touched:
            self._set_block(*pair, True)
        for pair in here - stored - touched:
            self._set_block(*pair, False)

    def _reloaded_last_seen(self, seen: Iterable[tuple[str, float]]) -> None:
        for username, at in seen:
            self.seen_elsewhere(username, at)

    # Writes nobody waits for ---------------------------------------------------

    def background(self, d: defer.Deferred[Any], failed: str, **fields: object) -> None:
        """Let ``d`` (work nobody waits for, such as a store write) finish on its own.

        :param failed: what to log if it fails (a :class:`~twisted.logger.Logger`
            format, filled from ``fields``).
        """
        d.addErrback(_log_failure, failed, fields)
        if not d.called:
            self._writes.add(d)
            d.addBoth(self._written, d)

    def _written(self, result: object, d: defer.Deferred[Any]) -> object:
        self._writes.discard(d)
        return result

    def writes_done(self) -> defer.Deferred[None]:
        """Fires once the work under way in :meth:`background` is over (for the service's stop),
        including what that work starts meanwhile."""
        if not self._writes:
            return defer.succeed(None)
        return defer.DeferredList(list(self._writes)).addCallback(lambda _: self.writes_done())

    # Sessions ----------------------------------------------------------------

    def attach(self, username: str, client: ClientConnection, guest: bool = False) -> ChatMember:
        """Create the session of a user who has just authenticated.

        A guest starts from nothing: whatever is kept under its name (left
        by a server that crashed while another guest had it, or by a
        removed account) is forgotten first (:meth:`forget`).

        :param guest: whether ``username`` is a guest's name (not an account).
        :raises AlreadyLoggedIn: if ``username`` is online elsewhere.
        :raises ~chatservice.auth.errors.Banned: if an operator banned
            ``username`` or the client's address.
        """
        self.moderation.check_login(username, client.host)
        if username in self.sessions or username in self.claiming:
            raise AlreadyLoggedIn(username)
        session = self.session_factory(self, username, client, self.clock.seconds(), guest)
        if self.cluster is None:
            return self._attached(session)
        # One login per user across the cluster: the name is claimed in Redis
        # first; the session is online (and a guest's name forgotten) once it
        # holds the name, so nothing reaches a login the claim refuses.
        self.claiming.add(username)
        d = self.cluster.claim(session)
        d.addBoth(self._claim_over, username)
        return d.addCallbacks(lambda _: self._attached(session), self._not_claimed, errbackArgs=(session,))

    def _attached(self, session: ChatMember) -> ChatMember:
        if session.guest:
            self.forget(session.username)
            self._guest_skeletons[username_skeleton(session.username)] = session.username
        self.sessions[session.username] = session
        self.fanout.join(session.client)
        if session.auto_reply is not None:
            self._busy[session.username] = session
        self.activity.users_changed()
        return session

    def _claim_over(self, result: object, username: str) -> object:
        self.claiming.discard(username)
        return result

    def _not_claimed(self, failure: Failure, session: ChatMember) -> Failure:
        if failure.check(AlreadyLoggedIn, LoginUnavailable):
            return failure
        # Redis unreachable (or a bug): the name cannot be claimed, so the
        # login is refused as "unavailable", not as a second login.
        log.failure("Claiming {user} in the cluster failed", failure, user=session.username)
        raise LoginUnavailable()

    def detach(self, session: ChatMember) -> None:
        """Remove ``session`` from the online set and tell the others (unless hidden).

        A guest's state ends with its session (:meth:`forget`): the next guest
        of that name is someone else.
        """
        username = session.username
        if self.sessions.get(username) is not session:
            return
        if not (session.hidden or session.guest or username in self._removing):
            self.mark_seen(username)
        try:
            # Told while still online, so that the hidden rule sees the session.
            self.deliver(events.Presence(username, False), username, EVERYONE, Delivery.PRESENCE)
        finally:
            del self.sessions[username]
            self._busy.pop(username, None)
            self.fanout.leave(session.client)
            self.activity.users_changed()
            if self.cluster is not None:
                self.cluster.release(session)
            if session.guest:
                self.forget(username)
                skeleton = username_skeleton(username)
                if self._guest_skeletons.get(skeleton) == username:
                    del self._guest_skeletons[skeleton]

    def online(self, username: str) -> ChatMember | None:
        """``username``'s session, on this node or (with a cluster) another."""
        session = self.sessions.get(username)
        if session is None and self.cluster is not None:
            return self.cluster.online(username)
        return session

    def online_members(self) -> list[ChatMember]:
        """Every online user, this node's and the others', in login order."""
        members = list(self.sessions.values())
        if self.cluster is not None:
            members += self.cluster.remote.values()
            members.sort(key=lambda member: member.logged_in_at)
        return members

    def room_changed(self, room: StoredRoom) -> None:
        """A room was stored as created or changed, or removed (no members): the other nodes follow."""
        if self.cluster is not None:
            self.cluster.room_changed(room)

    def member_changed(self, member: ChatMember) -> None:
        """``member`` became hidden or visible, busy or available: the other nodes follow."""
        username = member.username
        if member.auto_reply is not None and self.sessions.get(username) is member:
            self._busy[username] = member
        else:
            self._busy.pop(username, None)
        if self.cluster is not None:
            self.cluster.changed(member)

    def forget(self, username: str) -> None:
        """Forget what is kept about ``username``, who is not online: a guest's name.

        The blocks it made and the blocks of it and its last-seen time go at
        once, as do its room memberships (the other members are told it
        left; a room left empty is removed), and the messages kept for it are
        dropped; the store forgets them in the background.  What it sent
        (direct messages kept for others, broadcasts and room messages) stays
        with its readers.
        """
        for blocked in list(self._blocked_by.get(username, ())):
            self._forget_block(username, blocked)
        for blocker in list(self._blockers_of.get(username, ())):
            self._forget_block(blocker, username)
        self._last_seen.pop(username, None)
        for room in self.rooms.of(username):
            d = self.rooms.leave(room, username)
            d.addCallback(self._forgotten_in_room, username, room.members)
            self.background(
                d, "Taking {user} out of room {room} failed", user=username, room=room.room_id
            )
        self.background(
            self.store.forget_user(username), "Forgetting guest {user} failed", user=username
        )

    def _forget_block(self, blocker: str, blocked: str) -> None:
        """Drop a block of or by a forgotten guest, here and (clustered) on every node."""
        self._set_block(blocker, blocked, False)
        if self.cluster is not None:
            self.cluster.block_changed(blocker, blocked, False)

    def _forgotten_in_room(self, stored: StoredRoom, username: str, members: frozenset[str]) -> None:
        """A forgotten guest is out of a room (``stored``): the nodes follow, the members are told."""
        self.room_changed(stored)
        self.deliver(events.RoomLeft(stored.room_id, username), username, members, Delivery.PLAIN)

    def active_user_rows(self) -> list[tuple[float, str, str, int | None]]:
        """(login time, name, address, UDP port) of each online user, in login order."""
        return [
            (s.logged_in_at, s.username, s.client.host, s.client.udp_port)
            for s in self.online_members()
        ]

    def user_exists(self, username: str) -> bool:
        """Whether ``username`` is an account (as far as this node knows) or an online guest."""
        return self.online(username) is not None or self.accounts.exists(username)

    def find_user(self, username: str) -> defer.Deferred[bool]:
        """:meth:`user_exists`, asking the store when this node does not know the name."""
        if self.online(username) is not None:
            return defer.succeed(True)
        return self.accounts.find(username)

    def guest_online(self, username: str) -> bool:
        """Whether a guest is online under ``username``, or a name that looks like it.

        See :func:`~chatservice.auth.credentials.username_skeleton`.
        """
        session = self.online(username)
        if session is not None:
            return session.guest
        skeleton = username_skeleton(username)
        if skeleton in self._guest_skeletons:
            return True
        if self.cluster is None:
            return False
        # Another node's guests: few, and only theirs are looked at.
        return any(
            member.guest and username_skeleton(member.username) == skeleton
            for member in self.cluster.remote.values()
        )

    def last_seen_at(self, username: str) -> float | None:
        """When ``username`` was last visibly online (logged out or hid), if ever."""
        return self._last_seen.get(username)

    def mark_seen(self, username: str) -> None:
        """Record that ``username`` was visibly online until now (stored in the background)."""
        now = self.clock.seconds()
        self._last_seen[username] = now
        if self.cluster is not None:
            self.cluster.seen(username, now)
        self.background(
            self.store.record_seen(username, now),
            "Recording when {user} was last seen failed",
            user=username,
        )

    # Blocks --------------------------------------------------------------------

    def has_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` has blocked ``blocked``."""
        blocked_users = self._blocked_by.get(blocker)
        return blocked_users is not None and blocked in blocked_users

    def block(self, blocker: str, blocked: str) -> defer.Deferred[None]:
        """Record a block (the caller checked it is new).

        It is in effect at once; the Deferred fires once it is stored.  If
        the store fails, the block is undone and the Deferred fails.
        """
        self._set_block(blocker, blocked, True)
        d = self.store.add_block(blocker, blocked)
        d.addCallback(self._block_stored, blocker, blocked, True)
        return d.addErrback(self._undo_block, blocker, blocked, False)

    def unblock(self, blocker: str, blocked: str) -> defer.Deferred[None]:
        """Remove a block (the caller checked it exists): as :meth:`block`, the other way."""
        self._set_block(blocker, blocked, False)
        d = self.store.remove_block(blocker, blocked)
        d.addCallback(self._block_stored, blocker, blocked, False)
        return d.addErrback(self._undo_block, blocker, blocked, True)

    def _block_stored(self, result: None, blocker: str, blocked: str, on: bool) -> None:
        if self.cluster is not None:
            self.cluster.block_changed(blocker, blocked, on)

    def _undo_block(self, failure: Failure, blocker: str, blocked: str, on: bool) -> Failure:
        """The store refused a block change: back to ``on``, and pass the failure on."""
        self._set_block(blocker, blocked, on)
        return failure

    def _set_block(self, blocker: str, blocked: str, on: bool) -> None:
        """Put the block of ``blocked`` by ``blocker`` in the indexes (``on``) or take it out."""
        if self._touched_blocks is not None:
            self._touched_blocks.add((blocker, blocked))
        for index, key, value in (
            (self._blocked_by, blocker, blocked),
            (self._blockers_of, blocked, blocker),
        ):
            users = index.get(key)
            if on:
                if users is None:
                    users = index[key] = set()
                users.add(value)
            elif users is not None:
                users.discard(value)
                if not users:
                    del index[key]

    # Who hears what ----------------------------------------------------------------

    def deliver(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery
    ) -> defer.Deferred[DeliveryReport]:
        """Hand ``event`` from ``sender`` to the members of ``audience`` that ``rule`` lets have it.

        The one place where events go to other users: presence, broadcasts,
        room traffic, typing notices, introductions and direct messages.  The
        sender never gets its own event; names of users not online are passed
        over (but a direct message to one is kept for them).

        The report comes as a Deferred: on one node at once for every rule
        but :attr:`Delivery.DIRECT`, whose Deferred fires once the message
        is delivered or kept for later (durably: the store's write is done),
        or refused; in a cluster, a fan-out's once Redis has answered whether
        each other node got it
        (:meth:`~chatservice.cluster.node.ClusterNode.deliver_remote`).  (A
        broadcast, in the callback of its :meth:`post`, uses
        :meth:`deliver_message`, the same fan-out with its report at once on
        one node.)

        :param event: what to deliver (for :attr:`Delivery.DIRECT`, a
            :class:`~chatservice.events.DirectMessage`).
        :param sender: the user it is from (for presence, the user it is about).
        :param audience: :data:`~chatservice.delivery.EVERYONE`, or user names
            (exactly one for :attr:`Delivery.DIRECT`).
        :param rule: which of them get it (see :class:`~chatservice.delivery.Delivery`).
        :raises ValueError: for a direct message to other than one user.
        """
        if rule is Delivery.MESSAGE:
            reported = self.deliver_message(event, sender, audience)
            return reported if isinstance(reported, defer.Deferred) else defer.succeed(reported)
        if rule is Delivery.DIRECT:
            assert isinstance(event, events.DirectMessage)
            self.metrics.message("direct")
            d = self._deliver_direct(event, sender, audience)
            return d.addCallback(self._count_direct)
        report = self._deliver_notice(event, sender, audience, rule)
        if self.cluster is not None and report is not NOTHING:
            return self._deliver_remote(event, sender, audience, rule, report)
        return defer.succeed(report)

    def _deliver_remote(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery,
        report: DeliveryReport,
    ) -> defer.Deferred[DeliveryReport]:
        """The other nodes' part of a fan-out (in a cluster): ``report`` with theirs added."""
        assert self.cluster is not None
        d = self.cluster.deliver_remote(event, sender, audience, rule, report)
        return d.addCallback(self._count_unreached, rule)

    def _count_unreached(self, report: DeliveryReport, rule: Delivery) -> DeliveryReport:
        if report.unreached:
            self.metrics.unreached(rule, report.unreached)
        return report

    def _count_direct(self, report: DeliveryReport) -> DeliveryReport:
        self.metrics.delivery(Delivery.DIRECT, report)
        return report

    def deliver_here(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery
    ) -> None:
        """Deliver ``event`` to this node's users only (it came from another node, which
        reaches the rest): the same rules, nothing sent on."""
        if rule is Delivery.MESSAGE:
            self._deliver_message_here(event, sender, audience)
        elif rule is not Delivery.DIRECT:
            self._deliver_notice(event, sender, audience, rule)

    def direct_here(self, username: str, message_id: int, event: events.Event) -> None:
        """Another node kept a direct message for ``username``, online here: show it now.

        Kept in the store first by the sender's node, so that it is never
        lost: the session shows it once (:meth:`Session.show_direct`) and the
        store then forgets it.  If the user is busy or slow, it stays kept
        for them.
        """
        session = self.sessions.get(username)
        if session is None or session.auto_reply is not None or session.client.congested:
            return
        if isinstance(event, events.DirectMessage):
            session.show_direct(message_id, event)

    def kept_here(self, username: str) -> None:
        """Another node kept a direct message for ``username``, online here: deliver it."""
        session = self.sessions.get(username)
        if session is not None and session.auto_reply is None and not session.client.congested:
            self.background(
                session.deliver_kept(), "Delivering the messages kept for {user} failed", user=username
            )

    def block_changed_elsewhere(self, blocker: str, blocked: str, on: bool) -> None:
        """Another node stored a block change: this node's indexes follow."""
        self._set_block(blocker, blocked, on)

    def seen_elsewhere(self, username: str, at: float) -> None:
        """Another node recorded when ``username`` was last online."""
        self._last_seen[username] = max(at, self._last_seen.get(username, at))

    def room_changed_elsewhere(
        self, room_id: int, members: Iterable[str] | None, version: int
    ) -> None:
        """Another node created, changed or removed (``None``) a room, stored as ``version``;
        taken unless the copy here is as new or newer."""
        self.rooms.adopt(room_id, None if members is None else frozenset(members), version)

    def blocked_by(self, blocker: str) -> Collection[str]:
        """The users ``blocker`` has blocked."""
        return self._blocked_by.get(blocker, _NOBODY)

    def blockers_of(self, blocked: str) -> Collection[str]:
        """The users who blocked ``blocked``."""
        return self._blockers_of.get(blocked, _NOBODY)

    def left_out(self, sender: str, rule: Delivery) -> Collection[str]:
        """Who does not get a notice from ``sender`` under ``rule`` (presence, typing, plain)."""
        if rule is Delivery.PRESENCE:
            return self._blocked_by.get(sender, _NOBODY)
        if rule is Delivery.TYPING:
            return self._blocked_by.get(sender, _NOBODY) | self._blockers_of.get(sender, _NOBODY)
        return _NOBODY

    def _deliver_notice(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery
    ) -> DeliveryReport:
        """:attr:`Delivery.PRESENCE`, :attr:`Delivery.TYPING` and :attr:`Delivery.PLAIN`."""
        if rule is Delivery.PRESENCE:
            subject = self.sessions.get(sender)
            if subject is not None and subject.hidden:
                return NOTHING
        report = self._deliver_unless(event, sender, audience, self.left_out(sender, rule))
        self.metrics.delivery(rule, report)
        return report

    def _members(self, audience: Audience) -> Iterable[ChatMember]:
        """The online sessions in ``audience``."""
        if audience is EVERYONE:
            return self.sessions.values()
        sessions = self.sessions
        return [sessions[name] for name in audience if name in sessions]

    def _deliver_unless(
        self, event: events.Event, sender: str, audience: Audience, left_out: Collection[str]
    ) -> DeliveryReport:
        """Deliver ``event`` to the members of ``audience`` not named in ``left_out``."""
        me = self.sessions.get(sender)
        if audience is EVERYONE and event.bulk:
            clients = self._left_out_clients(me, left_out)
            skipped = len(clients) - (me is not None)
            self.fanout.share(event, clients)
            return DeliveryReport(len(self.sessions) - len(clients), skipped)
        delivered = skipped = 0
        for member in self._members(audience):
            if member is me:
                continue
            if member.username in left_out:
                skipped += 1
            else:
                member.client.deliver(event)
                delivered += 1
        return DeliveryReport(delivered, skipped)

    def deliver_message(
        self, event: events.Event, sender: str, audience: Audience
    ) -> DeliveryReport | defer.Deferred[DeliveryReport]:
        """:attr:`Delivery.MESSAGE`: the fan-out of every broadcast (keep this loop lean).

        :meth:`deliver` with that rule, its report at once on one node: for
        a broadcast or room message, sent out in the callback of its
        :meth:`post` (waiting for one more Deferred there would cost about
        1% of a fan-out to 300 users).  In a cluster the report is a
        Deferred, fired once Redis has answered whether each other node got
        it (:meth:`deliver`).
        """
        report = self._deliver_message_here(event, sender, audience)
        if self.cluster is None:
            return report
        return self._deliver_remote(event, sender, audience, Delivery.MESSAGE, report)

    def _deliver_message_here(
        self, event: events.Event, sender: str, audience: Audience
    ) -> DeliveryReport:
        """:meth:`deliver_message` to this node's users."""
        me = self.sessions.get(sender)
        blockers = self._blockers_of.get(sender, _NOBODY)
        delivered = skipped = busy = 0
        auto_replies = []
        if audience is EVERYONE and event.bulk:
            # Everyone but a few: appended once for all the connections that keep up.
            clients = self._left_out_clients(me, blockers)
            skipped = len(clients) - (me is not None)
            for member in self._busy.values():
                if member is not me and member.client not in clients:
                    clients.add(member.client)
                    busy += 1
                    reply = member.miss(sender)
                    if reply is not None:
                        auto_replies.append((member.username, reply))
            self.fanout.share(event, clients)
            delivered = len(self.sessions) - len(clients)
        else:
            for member in self._members(audience):
                if member is me:
                    continue
                if member.username in blockers:
                    skipped += 1
                elif member.auto_reply is not None:  # busy
                    busy += 1
                    reply = member.miss(sender)
                    if reply is not None:
                        auto_replies.append((member.username, reply))
                else:
                    member.client.deliver(event)
                    delivered += 1
        report = DeliveryReport(delivered, skipped, busy, auto_replies=tuple(auto_replies))
        self.metrics.delivery(Delivery.MESSAGE, report)  # once a fan-out, not a recipient
        return report

    def _left_out_clients(
        self, me: ChatMember | None, names: Collection[str]
    ) -> set[ClientConnection]:
        """The clients of ``me`` and of the users named in ``names`` who are online here."""
        clients = set() if me is None else {me.client}
        if names:
            sessions = self.sessions
            for name in names:
                member = sessions.get(name)
                if member is not None:
                    clients.add(member.client)
        return clients

    def _deliver_direct(
        self, event: events.DirectMessage, sender: str, audience: Audience
    ) -> defer.Deferred[DeliveryReport]:
        """:attr:`Delivery.DIRECT`: deliver now, keep for later, or refuse."""
        if audience is EVERYONE or len(audience) != 1:
            raise ValueError("A direct message goes to exactly one user.")
        (to,) = audience
        if self.has_blocked(to, sender):
            return defer.succeed(DeliveryReport(refused="blocked"))
        recipient = self.sessions.get(to)
        if recipient is not None and recipient.auto_reply is None and not recipient.client.congested:
            recipient.client.deliver(event)
            return defer.succeed(DeliveryReport(delivered=1))
        if recipient is None and self.cluster is not None:
            # On another node: kept in the shared store first, then announced
            # there; if the announcement is lost it waits for the next look.
            recipient = self.cluster.online(to)
        busy = recipient if recipient is not None and recipient.auto_reply is not None else None
        guest = recipient if recipient is not None and recipient.guest else None
        d = self.store.keep_offline(
            sender, to, event.text, event.sent_at, self.max_offline, self.max_offline_per_sender
        )
        return d.addCallback(self._kept, event, sender, to, busy, guest)

    def _kept(
        self,
        kept: KeptOffline,
        event: events.DirectMessage,
        sender: str,
        to: str,
        busy: ChatMember | None,
        guest: ChatMember | None,
    ) -> DeliveryReport:
        """The store kept the message for ``to`` (or their mailbox refused it): the report,
        with the auto-reply of a busy recipient; a recipient on another node is
        told at once.

        :param busy: their busy session, if they are busy.
        :param guest: their session if they are a guest: if it ended
            meanwhile, the message is removed again and refused
            (``invalid_user``), as the guest's kept messages were dropped.
        """
        message = kept.message
        if guest is not None and self.online(to) is not guest:
            if message is not None:
                self.background(
                    self.store.remove_offline([message.message_id]),
                    "Removing a message kept for a guest who left failed ({user})", user=to,
                )
            return DeliveryReport(refused="invalid_user")
        if message is None:
            if kept.waiting >= self.max_offline:
                return DeliveryReport(refused="mailbox_full")
            return DeliveryReport(refused="mailbox_share_full")
        waiting = kept.waiting + 1
        self.metrics.mailbox(waiting)
        local = self.sessions.get(to)
        if local is not None and local.auto_reply is None and not local.client.congested:
            # Back (or caught up) while it was being stored, too late for the
            # fetch of their login: fetch again, or it would wait for the next.
            self.background(
                local.deliver_kept(), "Delivering the messages kept for {user} failed", user=to
            )
        elif local is None and self.cluster is not None:
            remote = self.cluster.online(to)
            if remote is not None and remote.auto_reply is None:
                # Their node takes it from the store (once) and shows it live.
                self.cluster.announce_direct(to, message.message_id, event)
                return DeliveryReport(delivered=1)
        if busy is None:
            return DeliveryReport(stored=1)
        reply = busy.auto_reply_to(sender)
        return DeliveryReport(
            stored=1, busy=1, auto_replies=() if reply is None else ((to, reply),)
        )

    # Lists and history -----------------------------------------------------------

    def visible_sessions(self) -> Iterator[ChatMember]:
        """The online users that are not hidden (on every node), in login order."""
        for session in self.online_members():
            if not session.hidden:
                yield session

    def seen_since(self, since: float) -> Iterable[str]:
        """Users visibly online now, or at any time from ``since`` on."""
        for session in self.visible_sessions():
            yield session.username
        for username, seen in self._last_seen.items():
            if seen >= since:
                session = self.online(username)
                if session is None or session.hidden:
                    yield username

    def post(
        self,
        channel: str,
        sender: str,
        text: str,
        then: Callable[[HistoryEntry], _T] | None = None,
    ) -> defer.Deferred[_T]:
        """Number, time and keep a broadcast or room message; once it is kept, ``then(entry)``.

        :param then: what to do with the kept message (send it out), in the
            same callback as recording it, so that a broadcast makes one
            callback and no more (``python3 -m bench.instructions``): the
            Deferred fires with what ``then`` returns (without it, with the
            entry).
        """
        d = self.store.add_history(channel, sender, text, self.clock.seconds())
        return d.addCallback(self._posted, then)

    def _posted(self, entry: HistoryEntry, then: Callable[[HistoryEntry], _T] | None) -> Any:
        self.metrics.message("broadcast" if entry.channel == BROADCAST_CHANNEL else "room")
        self.activity.message_posted(entry)
        return entry if then is None else then(entry)

    # Users removed by an administrator (chatservice-admin) -----------------------

    def remove_user(self, username: str) -> None:
        """``username``'s account is being deleted: end their session here, if any, and forget them.

        The session is told :data:`REMOVED` and ends at once (no last-seen
        time is recorded for it); then what memory keeps about them goes as
        for a guest (:meth:`forget`: blocks both ways, last-seen time, room
        memberships, each announced to the other nodes; the store forgets
        them too), and so does a mute of them (it would silence whoever
        takes the name next).  The node that deletes the account calls
        this, and every other node when the deletion is announced.
        """
        session = self.sessions.get(username)
        if session is not None:
            self._removing.add(username)
            try:
                session.client.disconnect(REMOVED)
                session.end()  # at once, even if the connection was closing already
            finally:
                self._removing.discard(username)
        self.moderation.mute(username, None)
        self.forget(username)


REMOVED = events.Disconnected(
    "removed", "Your account was removed by the administrator; this session ends."
)
"""What the session of a user whose account is deleted hears (:meth:`ChatState.remove_user`)."""


def _log_failure(failure: Failure, failed: str, fields: dict[str, object]) -> None:
    """Log a failure nobody waited for (see :meth:`ChatState.background`)."""
    log.failure(failed, failure, **fields)
