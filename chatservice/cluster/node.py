"""One node of a cluster: :class:`ClusterNode`, what it shares through Redis and how.

- **Lease.**  ``chat:lease:<node>`` with a :data:`LEASE_SECONDS` expiry,
  renewed every :data:`HEARTBEAT_SECONDS`.  A node whose lease is gone is
  dead: the first node to take ``chat:sweep:<node>`` (``SET NX``) logs its
  users out everywhere, with the usual presence notices.
- **Who is online.**  The hash ``chat:online``: user name to the node and
  what the others need (login time, address, peer ports, guest, hidden,
  auto-reply).  A login claims the name atomically (a Lua script): refused
  while another live node holds it; a dead node's claim is taken over.
  Every node keeps a copy of the other nodes' users (:class:`RemoteMember`),
  loaded whole at each (re)subscription and kept up by ``on``/``off``/``up``
  messages.
- **Events.**  JSON messages on ``chat:all`` (every node) and
  ``chat:node:<node>`` (one node); a turn's messages for a channel are
  published together, as a JSON array, never across a ``chat:all`` one
  (:class:`~chatservice.cluster.outbox.Outbox`).  A fan-out (``d``) carries the event in
  its JSON wire form (read back with :mod:`chatservice.wire.json_events`),
  the sender, the audience and the rule, and goes on each target node's
  own channel; each node applies the rule to its own users.  The sender's
  report waits for the ``PUBLISH`` replies: a node that was not subscribed
  (0 receivers) has its recipients ``unreached``.  A direct message to
  another node's user is kept in the shared store first and announced
  (``dm``); that node takes it from the store (once) and shows it, so a
  lost announcement delays it (to the next login or re-subscription) but
  never loses it.
- **Lock-outs.**  Login failures are counted in ``chat:fail:<kind>:<key>``
  (``INCR`` with an expiry; kinds ``user`` for a name at an address,
  ``address``, and ``name`` for a name from every address), so a failure on
  any node counts on all; the node whose failure reaches a lock-out's limit
  sets ``chat:lock:<kind>:<key>`` for the block duration and announces it
  (``lock``); every node holds it.  A login of a name reads its ``name``
  count (``GET``) to know how long it waits.  Blocks, last-seen times and rooms
  changed on one node are announced so that every node's copies follow (a
  room with the store's version of the change: the newest one is kept,
  whatever order the announcements arrive in).
- **Operators' actions.**  A kick, ban, unban or mute is announced
  (``mod``, with the action): every node does it to its own users (a ban
  is in the shared store already; the others hold it and end the sessions
  it matches).  A mute is also kept in ``chat:mute:<user>`` (expiring with
  it), and the bans are read again from the store, at each
  (re)subscription: a node that was away holds what was set meanwhile.
  An ``announce`` is a fan-out (``d``) like a broadcast.
- **Accounts.**  They are in the shared store; each node caches their names
  (:class:`~chatservice.auth.directory.StoredAccounts`).  A node that
  creates one announces it (``acct``) and the others add the name to their
  cache; after each (re)subscription a node reads all the names again, as
  an announcement may have been lost while it was away.
- **Administration.**  A node whose admin socket deletes an account
  (``chatservice-admin remove``/``delete``) announces it (``gone``): every
  node ends the user's session if it has it, and forgets them (cache, blocks,
  rooms, last-seen time).  ``chatservice-admin unlock`` deletes the name's
  (or the address's) ``chat:fail:*`` and ``chat:lock:*`` keys and announces
  it (``unlock``): every node drops the locks it holds for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable

import txredisapi
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.auth.errors import LoginUnavailable
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.slowdown import LoginSlowdown
from chatservice.cluster.link import RedisLink
from chatservice.cluster.outbox import Outbox, messages_in
from chatservice.cluster.roster import NodeTally, RemoteRoster, tally_group
from chatservice.delivery import EVERYONE, Audience, Delivery, DeliveryReport
from chatservice.state import AlreadyLoggedIn
from chatservice.wire import jsonlines
from chatservice.wire.json_events import decode_event

if TYPE_CHECKING:
    from chatservice.auth.directory import StoredAccounts
    from chatservice.interfaces import ChatMember
    from chatservice.state import ChatState
    from chatservice.store.interface import StoredRoom

log = Logger()

LEASE_SECONDS = 10
"""A node not heard of for this long is dead."""
HEARTBEAT_SECONDS = 3.0
"""How often a node renews its lease and looks for dead nodes."""
REPLY_SECONDS = 5.0
"""A Redis command not answered within this fails (txredisapi queues commands while
Redis is away; a login, a logout or the node's stop must not wait for it)."""
ELSEWHERE = events.Disconnected(
    "elsewhere", "You logged in on another server of this chat service meanwhile; this session ends."
)
"""What a session hears when another login of its user took the name while Redis was away."""
ONLINE = "chat:online"
ALL = "chat:all"
MUTE_PREFIX = "chat:mute:"
"""``chat:mute:<user>``: a mute in force (its announcement, as JSON), expiring with it."""

_CLAIM = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local node = cjson.decode(held)['n']
  if node ~= ARGV[3] and redis.call('EXISTS', 'chat:lease:' .. node) == 1 then
    return node
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return false
"""
"""Claim a user name for this node: nothing (claimed), or the live node that holds it."""

_RELEASE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and cjson.decode(held)['n'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
"""Release a user name held by a node (not one taken over by another since)."""

_STALE = """
local keep = {}
for i = 2, #ARGV do keep[ARGV[i]] = true end
local stale = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local info = cjson.decode(all[i + 1])
  if info['n'] == ARGV[1] and not keep[all[i]] then
    redis.call('HDEL', KEYS[1], all[i])
    table.insert(stale, all[i])
    table.insert(stale, info['x'] and 1 or 0)
  end
end
return stale
"""
"""Remove the entries this node holds in ``chat:online`` for users it does not have
(a former run of this node under the same name): their names and hidden flags."""

_COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""
"""Count one login failure; forgotten the window after the last one."""


def node_channel(node: str) -> str:
    """The channel only ``node`` listens to."""
    return f"chat:node:{node}"


def lease_key(node: str) -> str:
    return f"chat:lease:{node}"


class RemoteClient:
    """Another node's user's connection, as the chat rules read it.

    :param cluster: the local node, which sends what is delivered to it.
    """

    __slots__ = ("cluster", "username", "node", "host", "p2p_port", "udp_port", "kind", "secure")

    congested = False
    """Unknown here: the owner node decides (a kept message waits there)."""

    def __init__(
        self, cluster: ClusterNode, username: str, node: str, host: str,
        p2p_port: int | None, udp_port: int | None, kind: str = "", secure: bool | None = None,
    ) -> None:
        self.cluster = cluster
        self.username = username
        self.node = node
        self.host = host
        self.p2p_port = p2p_port
        self.udp_port = udp_port
        self.kind = kind
        """What the client is (``text``, ``telnet``, ``json``, ``web``), as its node said."""
        self.secure = secure
        """Whether its connection is encrypted, as its node said (``None``: not said)."""

    def deliver(self, event: events.Event) -> None:
        """Send ``event`` to this user through its node."""
        self.cluster.send_to(self.node, event, (self.username,))

    def disconnect(self, event: events.Disconnected) -> None:
        """Not this node's connection: nothing to close here."""


class RemoteMember:
    """A user online on another node, as this node knows them.

    :param info: the user's entry in ``chat:online``.
    """

    __slots__ = ("username", "client", "logged_in_at", "guest", "hidden", "auto_reply", "_replied")

    def __init__(self, cluster: ClusterNode, username: str, info: dict[str, Any]) -> None:
        self.username = username
        self.client = RemoteClient(
            cluster, username, info["n"], info.get("h", ""), info.get("p"), info.get("u"),
            info.get("k", ""), info.get("s"),
        )
        self.logged_in_at = float(info.get("t", 0.0))
        self.guest = bool(info.get("g"))
        self.hidden = bool(info.get("x"))
        self.auto_reply: str | None = info.get("b")
        self._replied: set[str] = set()

    @property
    def node(self) -> str:
        return self.client.node

    def update(self, info: dict[str, Any]) -> None:
        """Take a newer entry (hidden, busy changed)."""
        auto_reply = info.get("b")
        if auto_reply != self.auto_reply:
            self._replied = set()
        self.auto_reply = auto_reply
        self.hidden = bool(info.get("x"))

    def auto_reply_to(self, sender: str) -> str | None:
        """The auto-reply for ``sender``, once per busy period (as this node sees it)."""
        if self.auto_reply is None or sender in self._replied:
            return None
        self._replied.add(sender)
        return self.auto_reply

    def miss(self, sender: str) -> str | None:
        """A broadcast this busy user misses (counted by its own node)."""
        return self.auto_reply_to(sender)

    def deliver_kept(self) -> defer.Deferred[int]:
        """Ask the user's node to deliver what is kept for them."""
        self.client.cluster.announce_kept(self.username, self.node)
        return defer.succeed(0)

    def end(self) -> None:
        """Not this node's session."""


class TimedCommands:
    """Redis commands (``txredisapi``'s) whose replies fail after :data:`REPLY_SECONDS`.

    :param link: what holds the command connection (its ``commands``, read
        at each call: a reconnection makes a new one).
    :param clock: the reactor.
    """

    def __init__(self, link: Any, clock: Any) -> None:
        self._link = link
        self._clock = clock

    def __getattr__(self, name: str) -> Callable[..., defer.Deferred[Any]]:
        command = getattr(self._link.commands, name)

        def call(*args: Any, **kwargs: Any) -> defer.Deferred[Any]:
            d = command(*args, **kwargs).addTimeout(REPLY_SECONDS, self._clock)
            return d.addErrback(_as_connection_error)

        return call


def _as_connection_error(failure: Failure) -> None:
    """txredisapi's lost connection as Python's :class:`ConnectionError` (what callers check for)."""
    failure.trap(txredisapi.ConnectionError)
    raise ConnectionError(str(failure.value))


def member_info(node: str, member: ChatMember) -> dict[str, Any]:
    """A local session's entry in ``chat:online``."""
    client = member.client
    return {
        "n": node,
        "t": member.logged_in_at,
        "h": client.host,
        "p": client.p2p_port,
        "u": client.udp_port,
        "g": member.guest,
        "x": member.hidden,
        "b": member.auto_reply,
        "k": getattr(client, "kind", ""),
        "s": getattr(client, "secure", None),
    }


class ClusterNode(MultiService):
    """This node's part in the cluster; the chat state's ``cluster``.

    :param url: the ``--redis`` URL.
    :param name: this node's name (``--node-name``).
    :param state: the local chat state.
    :param reactor: for the Redis connections and the heartbeat.
    :param lockouts: the login lock-outs whose failures and locks are the cluster's.
    :param accounts: the accounts, whose cached names follow the other nodes'
        registrations (``None``: not shared, e.g. in tests of other parts).
    :param slowdown: the login slowdown whose failures are the cluster's.
    """

    def __init__(
        self,
        url: str,
        name: str,
        state: ChatState,
        reactor: IReactorTCP,
        lockouts: Iterable[LoginLockout] = (),
        accounts: StoredAccounts | None = None,
        slowdown: LoginSlowdown | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.state = state
        self.reactor = reactor
        self.lockouts = {lockout.kind: lockout for lockout in lockouts}
        for lockout in self.lockouts.values():
            lockout.shared = self
        self.accounts = accounts
        if accounts is not None:
            accounts.shared = self
        if slowdown is not None:
            slowdown.shared = self
        self.slowdown = slowdown
        self.remote = RemoteRoster()
        """The users online on the other nodes."""
        self._joined_at = 0.0
        """When this node last (re)subscribed: no sweeping for a lease's length after."""
        self.link = RedisLink(url, reactor, [ALL, node_channel(name)], self.received)
        self.link.setServiceParent(self)
        self._commands = TimedCommands(self.link, reactor)
        self.outbox = Outbox(self.link.publish, reactor, REPLY_SECONDS, ALL)
        """What this node publishes, a turn's messages for a channel together."""
        self.link.when_subscribed(self._subscribed)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor  # type: ignore[assignment]

    @property
    def redis(self) -> TimedCommands:
        return self._commands

    def startService(self) -> None:
        super().startService()
        self._heartbeat.start(HEARTBEAT_SECONDS, now=False)

    def stopService(self) -> defer.Deferred[None]:
        if self._heartbeat.running:
            self._heartbeat.stop()
        self.outbox.stop()
        d = defer.succeed(None)
        if self.link.connected:
            d = self.redis.delete(lease_key(self.name)).addErrback(lambda _: None)
        return d.addCallback(lambda _: super(ClusterNode, self).stopService())

    # Joining (and re-joining after a Redis restart) -------------------------------------

    def _subscribed(self) -> defer.Deferred[None]:
        """Subscribed anew: lease, our users, the others' users, what may have been missed."""
        self._joined_at = self.reactor.seconds()
        # The other nodes' announcements of blocks and rooms may have been lost
        # while this node was away: read them from the store again (the
        # users of the other nodes come into view once it has).
        reloaded = self.state.reload_shared()
        reloaded.addCallbacks(
            lambda _: log.info("Blocks, last-seen times and rooms read again from the store"),
            lambda f: log.failure("Reading the blocks and rooms again failed", f),
        )
        d = self.redis.eval(_STALE, [ONLINE], [self.name, *self.state.sessions, *self.state.claiming])
        d.addCallback(self._stale_gone)
        d.addCallback(lambda _: self.redis.set(lease_key(self.name), "1", expire=LEASE_SECONDS))
        for member in list(self.state.sessions.values()):
            d.addCallback(lambda _, m=member: self._register_again(m))
        d.addCallback(lambda _: self.redis.hgetall(ONLINE))
        d.addCallback(lambda entries: reloaded.addCallback(lambda _: entries))
        d.addCallback(self._load_online)
        d.addCallback(lambda _: self._deliver_kept_to_all())
        d.addCallback(lambda _: self._load_locks())
        d.addCallback(lambda _: self._resync_accounts())
        d.addCallback(lambda _: self._load_moderation())
        return d

    def _load_moderation(self) -> defer.Deferred[None]:
        """Hold the mutes the other nodes set, and read the bans again (set while this node was away)."""
        self.state.background(
            self.state.moderation.reload_bans(), "Reading the bans again failed"
        )
        d = self.redis.keys(f"{MUTE_PREFIX}*")

        def found(keys: list[Any]) -> defer.Deferred[None]:
            steps: defer.Deferred[None] = defer.succeed(None)
            for raw in keys:
                steps.addCallback(lambda _, k=_text(raw): self.redis.get(k))
                steps.addCallback(self._mute_found)
            return steps

        return d.addCallback(found)

    def _mute_found(self, value: Any) -> None:
        if value is None:
            return  # it ended meanwhile
        action = json.loads(_text(value))
        self.state.moderation.announced({**action, "quiet": True})

    def _resync_accounts(self) -> None:
        """Read the account names again (in the background): announcements may have been lost."""
        if self.accounts is not None:
            self.state.background(
                self.accounts.resync(), "Reading the account names again failed"
            )

    def _stale_gone(self, stale: list[Any]) -> None:
        """Users a former run of this node left in ``chat:online``: logged out everywhere."""
        for name, hidden in zip(stale[::2], stale[1::2]):
            username = _text(name)
            log.info("{user} was online on a former run of this node: logged out", user=username)
            self._logged_out(username, self.name, bool(int(hidden)))

    def _register_again(self, member: ChatMember) -> defer.Deferred[None]:
        """Put a user of this node back in ``chat:online`` (claimed again), and say so.

        A node that read ``chat:online`` before this entry was back learns it
        from the message: it was subscribed before it read, so it has one or
        the other.
        """
        info = self._info(member)
        d = self.redis.eval(_CLAIM, [ONLINE], [member.username, info, self.name])

        def claimed(holder: Any) -> defer.Deferred[None] | None:
            if holder:
                # Logged in on another node while Redis was away: that login
                # holds the name now, and this one ends (one login per user).
                log.info("{user} logged in on {node} while Redis was away: this session ends",
                         user=member.username, node=_text(holder))
                member.client.disconnect(ELSEWHERE)
                return None
            return self._publish(ALL, {"k": "up", "u": member.username, "i": json.loads(info)})

        return d.addCallback(claimed)

    def _load_locks(self) -> defer.Deferred[None]:
        """Hold the locks the other nodes took (while this one was away)."""
        d = self.redis.keys("chat:lock:*")

        def found(keys: list[Any]) -> defer.Deferred[None]:
            steps: defer.Deferred[None] = defer.succeed(None)
            for raw in keys:
                _, _, kind, key = _text(raw).split(":", 3)
                lockout = self.lockouts.get(kind)
                if lockout is not None:
                    steps.addCallback(lambda _, k=_text(raw): self.redis.ttl(k))
                    steps.addCallback(
                        lambda ttl, l=lockout, k=key: l.lock(k, ttl) if ttl and ttl > 0 else None
                    )
            return steps

        return d.addCallback(found)

    def _load_online(self, entries: dict[Any, Any]) -> None:
        remote = RemoteRoster()
        for raw_name, raw_info in entries.items():
            name, info = _text(raw_name), json.loads(_text(raw_info))
            if info["n"] != self.name:
                remote.add(RemoteMember(self, name, info))
        self.remote = remote

    def _deliver_kept_to_all(self) -> None:
        """A Redis outage may have lost announcements of kept messages: look for them all."""
        for member in list(self.state.sessions.values()):
            if member.auto_reply is None:
                self.state.background(
                    member.deliver_kept(),
                    "Delivering the messages kept for {user} failed", user=member.username,
                )

    def _beat(self) -> defer.Deferred[None] | None:
        if not self.link.connected:
            return None
        d = self.redis.set(lease_key(self.name), "1", expire=LEASE_SECONDS)
        d.addCallback(lambda _: self._sweep())
        d.addErrback(lambda f: log.warn("Renewing this node's Redis lease failed: {e}", e=f.value))
        return d

    # Logins ------------------------------------------------------------------------------

    def _info(self, member: ChatMember) -> str:
        return json.dumps(member_info(self.name, member))

    def claim(self, member: ChatMember) -> defer.Deferred[None]:
        """Hold ``member``'s name for this node.

        Fails with ``AlreadyLoggedIn`` if another live node holds it, and with
        ``LoginUnavailable`` while Redis cannot be reached (the claim cannot
        be checked, so no one logs in twice).
        """
        if not self.link.connected:
            log.warn("Refused the login of {user}: Redis is unreachable", user=member.username)
            return defer.fail(LoginUnavailable())
        info = self._info(member)
        d = self.redis.eval(_CLAIM, [ONLINE], [member.username, info, self.name])

        def claimed(holder: Any) -> None:
            if holder:
                raise AlreadyLoggedIn(member.username)
            self.remote.remove(member.username)
            self._publish(ALL, {"k": "on", "u": member.username, "i": json.loads(info)})

        return d.addCallback(claimed)

    def release(self, member: ChatMember) -> None:
        """``member`` logged out here: give the name back, tell the others.

        With Redis away, nothing is sent: the entry is removed when this node
        joins again (:data:`_STALE`).
        """
        if not self.link.connected:
            return
        d = self.redis.eval(_RELEASE, [ONLINE], [member.username, self.name])
        d.addCallback(lambda _: self._publish(ALL, {"k": "off", "u": member.username, "n": self.name}))
        d.addErrback(lambda f: log.warn("Releasing {user} in Redis failed: {e}", user=member.username, e=f.value))
        self.state.background(d, "Releasing {user} in Redis failed", user=member.username)

    def changed(self, member: ChatMember) -> None:
        """``member``'s hidden or busy state changed: the others' copies follow."""
        if not self.link.connected:
            return  # put back whole when this node joins again
        info = self._info(member)
        d = self.redis.hset(ONLINE, member.username, info)
        d.addCallback(lambda _: self._publish(ALL, {"k": "up", "u": member.username, "i": json.loads(info)}))
        d.addErrback(lambda f: log.warn("Telling the cluster about {user} failed: {e}", user=member.username, e=f.value))
        self.state.background(d, "Telling the cluster about {user} failed", user=member.username)

    # Dead nodes -------------------------------------------------------------------------------

    def _sweep(self) -> defer.Deferred[None]:
        if self.reactor.seconds() - self._joined_at < LEASE_SECONDS:
            # Just (re)joined: after a Redis restart the others may not have
            # renewed their leases yet.
            return defer.succeed(None)
        nodes = self.remote.nodes()
        d: defer.Deferred[None] = defer.succeed(None)
        for node in nodes:
            d.addCallback(lambda _, n=node: self.redis.exists(lease_key(n)))
            d.addCallback(lambda alive, n=node: None if alive else self._take_over(n))
        return d

    def _take_over(self, node: str) -> defer.Deferred[None]:
        """``node`` is dead: the first node to see it logs its users out everywhere."""
        d = self.redis.set(f"chat:sweep:{node}", self.name, expire=LEASE_SECONDS * 2, only_if_not_exists=True)

        def swept(taken: Any) -> defer.Deferred[None] | None:
            if not taken:
                return None
            log.warn("Node {node} is gone: logging its users out", node=node)
            gone = self.remote.on_node(node)
            steps: defer.Deferred[None] = defer.succeed(None)
            for member in gone:
                steps.addCallback(lambda _, m=member: self.redis.eval(_RELEASE, [ONLINE], [m.username, node]))
                # Only if the dead node still held the name: else the user
                # logged in again elsewhere meanwhile, and is not gone.
                steps.addCallback(lambda released, m=member: self._gone(m, node) if released else None)
            return steps

        return d.addCallback(swept)

    def _gone(self, member: RemoteMember, node: str) -> None:
        """Log a dead node's user out everywhere, as a logout would."""
        if self.remote.get(member.username) is member:
            self.remote.remove(member.username)
        self._logged_out(member.username, node, member.hidden)
        if not (member.hidden or member.guest):
            self.state.mark_seen(member.username)
        if member.guest:
            self.state.forget(member.username)

    def _logged_out(self, username: str, node: str, hidden: bool) -> None:
        """The presence notice of a user logged out for a node, and the others' copies."""
        if not hidden:
            notice = events.Presence(username, False)
            self.state.deliver_here(notice, username, EVERYONE, Delivery.PRESENCE)
            self._publish(ALL, self._delivery(notice, username, EVERYONE, Delivery.PRESENCE))
        self._publish(ALL, {"k": "off", "u": username, "n": node})

    # Delivery ---------------------------------------------------------------------------------

    def online(self, username: str) -> RemoteMember | None:
        """The user's copy, if online on another node."""
        return self.remote.get(username)

    def deliver_remote(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery,
        report: DeliveryReport,
    ) -> defer.Deferred[DeliveryReport]:
        """Send a fan-out to the other nodes; fires with ``report`` (this node's) and theirs added.

        Published on each target node's own channel (``chat:node:<name>``),
        never on ``chat:all``: ``PUBLISH`` answers how many subscribers got
        it, so the report waits for those answers.  A node that got it has
        its part counted from the copies (blocks are the same on every
        node); the recipients of a node that did not (0 subscribers: it is
        re-subscribing after a Redis restart, or gone), or whose ``PUBLISH``
        failed or was not answered within :data:`REPLY_SECONDS`, are
        ``unreached``.  All of it goes out on the one command connection, in
        the order of the calls, so each node gets it in order with what this
        node publishes on ``chat:all`` (Redis hands every subscriber its
        messages in the order it ran the ``PUBLISH`` commands).
        """
        remote = self.remote
        state = self.state
        message = rule is Delivery.MESSAGE
        left_out = state.blockers_of(sender) if message else state.left_out(sender, rule)
        if audience is EVERYONE:
            # Counted by node (RemoteRoster.tally), not user by user: a broadcast
            # costs the sender's node a step per node, blocker and busy user.
            tallies = remote.tally(sender, left_out, message)
        else:
            by_node: dict[str, list[RemoteMember]] = {}
            for name in audience:
                member = remote.get(name)
                if member is not None and name != sender:
                    by_node.setdefault(member.node, []).append(member)
            tallies = [tally_group(node, group, left_out, message) for node, group in by_node.items()]
        if not tallies:
            return defer.succeed(report)
        if not self.link.connected:
            # Reported, not silently lost: the sender learns that these were
            # not reached (the message is in the history for read).
            return defer.succeed(_with_unreached(report, sum(t.reached for t in tallies)))
        if audience is EVERYONE:
            # One rendering for every node: each delivers to all its users.
            text = _json(self._delivery(event, sender, EVERYONE, rule))
            sent = [self._publish_counted(node_channel(t.node), text) for t in tallies]
        else:
            sent = [
                self._publish_counted(
                    node_channel(node),
                    _json(self._delivery(event, sender, [m.username for m in group], rule)),
                )
                for node, group in by_node.items()
            ]
        # One other node (the usual case) needs no DeferredList: it costs a
        # broadcast more than the rest of this method.
        d: defer.Deferred[Any] = sent[0] if len(sent) == 1 else defer.gatherResults(sent)
        return d.addCallback(_remote_report, tallies, sender, report)

    def send_to(self, node: str, event: events.Event, names: tuple[str, ...]) -> None:
        """Deliver ``event`` to ``names`` on ``node`` (the rules were applied here)."""
        self._publish(node_channel(node), self._delivery(event, "", names, Delivery.PLAIN))

    def announce_direct(self, username: str, message_id: int, event: events.Event) -> None:
        """A direct message for ``username`` (on another node) is in the store: show it there."""
        member = self.remote.get(username)
        if member is not None:
            self._publish(
                node_channel(member.node),
                {"k": "dm", "u": username, "id": message_id, "e": jsonlines.render(event)},
            )

    def announce_kept(self, username: str, node: str) -> None:
        """A direct message for ``username`` (on ``node``) is in the store: deliver it."""
        self._publish(node_channel(node), {"k": "kept", "u": username})

    def _forward_kept(self, message: dict[str, Any]) -> None:
        """A kept message announced here for a user who is not here (they moved meanwhile).

        Where they are is read from ``chat:online`` (this node's copy may
        not have their new login yet), and that node is told to look (once:
        a forwarded announcement is not forwarded again).  The message was
        committed before it was announced, so a login that claims the name
        after this reading fetches it at its start: if the name is held by
        no one, or by this node (a login here claimed it, its session not
        yet started), that login, or the next, shows it.  If Redis does not
        answer, the node holding the user looks for kept messages when it
        registers its users again.
        """
        username = message["u"]
        if message.get("f") or not self.link.connected:
            return
        d = self.redis.hget(ONLINE, username)
        d.addCallback(self._forward_to_holder, username)
        d.addErrback(lambda f: log.warn(
            "Where {user} is could not be read: {e}; a message kept for them waits",
            user=username, e=f.value,
        ))
        self.state.background(d, "Forwarding a kept message for {user} failed", user=username)

    def _forward_to_holder(self, entry: Any, username: str) -> None:
        """``chat:online``'s ``entry`` of ``username`` was read: tell its node to look."""
        if entry is None:
            return
        node = json.loads(_text(entry))["n"]
        if node == self.name:
            self.state.kept_here(username)  # (if the login's session has started meanwhile)
        else:
            self._publish(node_channel(node), {"k": "kept", "u": username, "f": 1})

    def _delivery(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery
    ) -> dict[str, Any]:
        return {
            "k": "d",
            "s": sender,
            "a": None if audience is EVERYONE else list(audience),
            "r": rule.name,
            "e": jsonlines.render(event),
            "n": self.name,
        }

    # Lock-outs (SharedFailures) --------------------------------------------------------------

    def count_failure(self, kind: str, key: str, window: float) -> defer.Deferred[int]:
        if not self.link.connected:
            return defer.fail(ConnectionError("not connected to Redis"))
        return self.redis.eval(_COUNT_FAILURE, [f"chat:fail:{kind}:{key}"], [int(window) or 1])

    def failure_count(self, kind: str, key: str) -> defer.Deferred[int]:
        if not self.link.connected:
            return defer.fail(ConnectionError("not connected to Redis"))
        d = self.redis.get(f"chat:fail:{kind}:{key}")
        return d.addCallback(lambda value: int(_text(value)) if value is not None else 0)

    def clear_failures(self, kind: str, key: str) -> None:
        if self.link.connected:
            self.state.background(
                self.redis.delete(f"chat:fail:{kind}:{key}"), "Clearing failures of {key} failed", key=key
            )

    def announce_lock(self, kind: str, key: str, seconds: float) -> None:
        if not self.link.connected:
            return  # held here; the other nodes count on their own meanwhile
        d = self.redis.set(f"chat:lock:{kind}:{key}", self.name, expire=int(seconds) or 1)
        d.addCallback(lambda _: self._publish(ALL, {"k": "lock", "t": kind, "key": key, "for": seconds, "n": self.name}))
        d.addErrback(lambda f: log.warn("Announcing the lock of {key} failed: {e}", key=key, e=f.value))
        self.state.background(d, "Announcing the lock of {key} failed", key=key)

    # Accounts (AccountsShared) -----------------------------------------------------------------

    def account_added(self, username: str) -> None:
        """This node created the account ``username``: every other node's cache adds it."""
        self._publish(ALL, {"k": "acct", "u": username, "n": self.name})

    def account_removed(self, username: str) -> None:
        """The account ``username`` was deleted here (``chatservice-admin``): every other node
        ends the user's session and forgets them, and a mute of them kept in Redis goes."""
        self._publish(ALL, {"k": "gone", "u": username, "n": self.name})
        d = self.redis.delete(MUTE_PREFIX + username)
        d.addErrback(lambda f: log.warn("Forgetting the mute of {user} in Redis failed: {e}", user=username, e=f.value))
        self.state.background(d, "Forgetting a mute in Redis failed")

    # Unlocking (chatservice-admin) -----------------------------------------------------------

    def unlock(self, kind: str, key: str) -> defer.Deferred[int]:
        """Clear the failures and locks of ``key`` in Redis and on every node.

        :param kind: ``user`` (``key`` is a user name: its keys at every
            address, and its ``name`` count, go) or ``address``.
        :return: a Deferred firing with how many Redis keys were deleted, or
            failing with :class:`ConnectionError` when Redis cannot be
            reached (this node's lock-outs are the caller's to clear).
        """
        if not self.link.connected:
            return defer.fail(ConnectionError("not connected to Redis"))
        exact = [f"chat:{what}:{kind}:{key}" for what in ("fail", "lock")]
        patterns = []
        if kind == "user":
            exact.append(f"chat:fail:name:{key}")
            patterns = [f"chat:{what}:user:{_glob_escaped(key)}@*" for what in ("fail", "lock")]
        d = defer.gatherResults([self.redis.keys(pattern) for pattern in patterns])

        def delete(found: list[list[Any]]) -> defer.Deferred[int]:
            return self.redis.delete([_text(k) for keys in found for k in keys] + exact)

        d.addCallback(delete)
        d.addCallback(lambda deleted: self._publish(
            ALL, {"k": "unlock", "t": kind, "key": key, "n": self.name}
        ).addCallback(lambda _: int(deleted)))
        return d

    # Operators' actions ---------------------------------------------------------------------

    def moderation(self, action: dict[str, Any]) -> bool:
        """An operator acted here: every other node does ``action`` too (a mute is also kept in Redis).

        :return: whether it was sent (not while Redis is away: the other
            nodes then read the bans from the store when this node's link
            is back, at the latest within a minute; a mute stays this node's).
        """
        if not self.link.connected:
            log.warn("Not connected to Redis: the other nodes do not learn of {do}", do=action.get("do"))
            return False
        if action.get("do") == "mute":
            key = MUTE_PREFIX + action["u"]
            until = action.get("until")
            if until is None:
                kept = self.redis.delete(key)
            else:
                seconds = max(1, math.ceil(float(until) - self.reactor.seconds()))
                kept = self.redis.set(key, json.dumps(action), expire=seconds)
            kept.addErrback(lambda f: log.warn("Keeping the mute of {user} in Redis failed: {e}", user=action["u"], e=f.value))
            self.state.background(kept, "Keeping a mute in Redis failed")
        self._publish(ALL, {"k": "mod", "a": action, "n": self.name})
        return True

    # Shared copies ------------------------------------------------------------------------------

    def block_changed(self, blocker: str, blocked: str, on: bool) -> None:
        self._publish(ALL, {"k": "blk", "a": blocker, "b": blocked, "on": on, "n": self.name})

    def seen(self, username: str, at: float) -> None:
        self._publish(ALL, {"k": "seen", "u": username, "t": at, "n": self.name})

    def room_changed(self, room: StoredRoom) -> None:
        members = sorted(room.members) if room.members else None
        self._publish(
            ALL, {"k": "room", "id": room.room_id, "m": members, "v": room.version, "n": self.name}
        )

    # Messages ------------------------------------------------------------------------------

    def _publish(self, channel: str, message: dict[str, Any]) -> defer.Deferred[int]:
        """Publish ``message`` (in the background: the state waits for it at shutdown)."""
        if not self.link.connected:
            log.warn(
                "Not connected to Redis: a {kind} message to {channel} is not sent",
                kind=message["k"], channel=channel,
            )
            return defer.succeed(0)
        return self._publish_counted(channel, _json(message))

    def _publish_counted(self, channel: str, text: str) -> defer.Deferred[int]:
        """Publish ``text`` on ``channel`` at the end of this turn (with the turn's other
        messages for it, :class:`~chatservice.cluster.outbox.Outbox`); fires with how
        many subscribers got it.

        0 also when the ``PUBLISH`` failed or was not answered within
        :data:`REPLY_SECONDS` (logged).  The state waits for it at shutdown.
        """
        d = self.outbox.put(channel, text)
        self.state.background(d, "Publishing to {channel} failed", channel=channel)
        return d

    def received(self, channel: str, text: str) -> None:
        """Messages from another node (or this one, on ``chat:all``: ignored): one, or a
        turn's together (:class:`~chatservice.cluster.outbox.Outbox`), each handled in
        order; one that cannot be handled is logged and lost alone."""
        for message in messages_in(text):
            try:
                self._received(message)
            except Exception:
                node = message.get("n", "?") if isinstance(message, dict) else "?"
                log.failure("Handling a message from node {node} failed", node=node)

    def _received(self, message: dict[str, Any]) -> None:
        if message.get("n") == self.name:
            return
        kind = message["k"]
        if kind == "d":
            event = decode_event(message["e"])
            if event is None:
                log.warn("An event from another node could not be read: {e!r}", e=message["e"])
                return
            audience = EVERYONE if message["a"] is None else tuple(message["a"])
            self.state.deliver_here(event, message["s"], audience, Delivery[message["r"]])
        elif kind == "on" or kind == "up":
            name, info = message["u"], message["i"]
            if info["n"] == self.name:
                return
            member = self.remote.get(name)
            if member is None or kind == "on":
                self.remote.add(RemoteMember(self, name, info))
            elif member.node == info["n"]:
                member.update(info)  # (a late "up" from a node the user left is ignored)
                self.remote.busy_changed(member)
        elif kind == "off":
            member = self.remote.get(message["u"])
            if member is not None and member.node == message["n"]:
                self.remote.remove(message["u"])
        elif kind in ("kept", "dm") and message["u"] not in self.state.sessions:
            self._forward_kept(message)
        elif kind == "kept":
            self.state.kept_here(message["u"])
        elif kind == "dm":
            event = decode_event(message["e"])
            if event is not None:
                self.state.direct_here(message["u"], int(message["id"]), event)
        elif kind == "blk":
            self.state.block_changed_elsewhere(message["a"], message["b"], message["on"])
        elif kind == "seen":
            self.state.seen_elsewhere(message["u"], message["t"])
        elif kind == "room":
            self.state.room_changed_elsewhere(message["id"], message["m"], int(message["v"]))
        elif kind == "acct":
            if self.accounts is not None:
                self.accounts.added_elsewhere(message["u"])
        elif kind == "gone":
            if self.accounts is not None:
                self.accounts.removed_elsewhere(message["u"])
            self.state.remove_user(message["u"])
        elif kind == "unlock":
            lockout = self.lockouts.get(message["t"])
            if lockout is not None:
                lockout.unlock(message["key"])
            if message["t"] == "user" and self.slowdown is not None:
                self.slowdown.forgive(message["key"])
        elif kind == "mod":
            self.state.moderation.announced(message["a"])
        elif kind == "lock":
            lockout = self.lockouts.get(message["t"])
            if lockout is not None:
                lockout.lock(message["key"], float(message["for"]))


def _remote_report(
    receivers: int | list[int], tallies: list[NodeTally], sender: str, report: DeliveryReport
) -> DeliveryReport:
    """``report`` with the other nodes' part: ``tallies[i]``'s node had ``receivers[i]`` subscribers
    (``receivers`` alone: the one node's).

    A node with none (or whose ``PUBLISH`` failed) has all its part
    ``unreached``; a busy user of a node that got it misses it, and may
    auto-reply (once per busy period, as :meth:`RemoteMember.miss` keeps).
    """
    delivered, skipped, busy, unreached = report.delivered, report.skipped, report.busy, report.unreached
    auto_replies = list(report.auto_replies)
    counts = receivers if isinstance(receivers, list) else [receivers]
    for count, tally in zip(counts, tallies):
        if not count:
            unreached += tally.reached
            continue
        delivered += tally.delivered
        skipped += tally.skipped
        busy += len(tally.busy)
        for member in tally.busy:
            reply = member.miss(sender)  # type: ignore[attr-defined]
            if reply is not None:
                auto_replies.append((member.username, reply))
    return DeliveryReport(
        delivered, skipped, busy, report.stored, tuple(auto_replies), report.refused, unreached
    )


def _json(message: dict[str, Any]) -> str:
    """A message between nodes, as published."""
    return json.dumps(message, separators=(",", ":"))


def _with_unreached(report: DeliveryReport, unreached: int) -> DeliveryReport:
    """``report`` with ``unreached`` more recipients that could not be reached."""
    return dataclasses.replace(report, unreached=report.unreached + unreached)


def _glob_escaped(text: str) -> str:
    """``text`` in a Redis ``KEYS`` pattern, matching itself only."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
