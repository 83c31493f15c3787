"""Operators, bans and mutes: what the operator commands change, and what the server enforces.

:class:`Moderation` is the chat state's ``moderation``: for one server (one
node of a cluster) it holds

- the **operators**, whose names are in the store
  (:meth:`~chatservice.store.interface.IChatStore.operators`).  Whether a
  user is one is asked of the store each time it matters
  (:meth:`Moderation.is_operator`: an operator command, ``help``), so that a
  grant or revocation made with ``chatservice-admin`` while the server runs,
  or on another node, counts at once;
- the **bans** in force (:class:`BanBook`), kept in the store and loaded at
  start, again every :data:`RELOAD_SECONDS` (bans added or removed with the
  admin tool), and when a node (re)joins its cluster.  A ban names a user, an
  address or a network: it ends the matching sessions at once
  (:meth:`Moderation.enforce`), refuses new connections from a banned
  address (:meth:`Moderation.address_refusal`, asked by the connection
  registry) and logins of a banned user or from a banned address
  (:meth:`Moderation.check_login`).  A ban ends at its ``expires_at``, read
  against the state's clock when it is looked at: nothing is scheduled;
- the **mutes** (:class:`Mute`), in memory: a muted user's messages are
  refused until the mute ends.  In a cluster every node holds every mute (the
  node that sets one announces it, and keeps it in Redis for the nodes that
  join later: :mod:`chatservice.cluster.node`).

These are the server's in-band bans, set by operators; the ``--ban-file``
(:class:`~chatservice.server.policy.BanList`) is another list, read from
its file, and both apply.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatservice import events
from chatservice.auth.errors import Banned
from chatservice.commands import CommandError
from chatservice.store.interface import Ban, BanKind
from chatservice.timefmt import format_timestamp

if TYPE_CHECKING:
    from chatservice.state import ChatState

log = Logger()

RELOAD_SECONDS = 60.0
"""How often the bans are read again from the store (the admin tool's changes)."""


class BadBanTarget(ValueError):
    """A ban's target with a ``/`` that is no network: each edge says so its own way
    (an operator's ``bad_argument`` reply, the admin socket's ``invalid_request``)."""


def ban_target(text: str) -> tuple[BanKind, str]:
    """What ``text`` names, in a ban's form: an address, a network (CIDR), or else a user.

    An address is normalised (``::ffff:192.0.2.7`` is ``192.0.2.7``), as is a
    network (``192.0.2.7/24`` is ``192.0.2.0/24``); a network of one address
    is that address.

    :raises BadBanTarget: for a ``/`` that is no network.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return "address", str(_unmapped(address))
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise BadBanTarget(f"{text} is not an address or network (e.g. 192.0.2.0/24)") from None
        if network.num_addresses == 1:
            return "address", str(_unmapped(network.network_address))
        return "network", str(network)
    return "user", text


_BAN_NUMBER = re.compile("#?([0-9]{1,18})")
"""How a ban is named by its number: ``3`` or ``#3``."""


def ban_key(text: str) -> int | str:
    """What ``unban`` (an operator's or the admin tool's) was given: a ban's number, or a target.

    :return: the number (``3`` or ``#3``), else the target as :func:`ban_target` normalises it.
    :raises BadBanTarget: for a ``/`` that is no network.
    """
    number = _BAN_NUMBER.fullmatch(text)
    return int(number.group(1)) if number else ban_target(text)[1]


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    """An IPv4-mapped IPv6 address as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(ban: Ban) -> Network | None:
    """The addresses an address or network ban covers (``None``: a user ban, or unreadable)."""
    if ban.kind == "user":
        return None
    try:
        return ipaddress.ip_network(ban.target)
    except ValueError:
        return None


def ban_matches(ban: Ban, username: str | None, host: str) -> bool:
    """Whether ``ban`` applies to ``username`` (``None``: not logged in) connected from ``host``."""
    if ban.kind == "user":
        return username is not None and ban.target == username
    address, network = _address(host), _network(ban)
    return address is not None and network is not None and address in network


def until_text(until: float | None) -> str:
    """``until <time>``, or ``for good``."""
    return "for good" if until is None else f"until {format_timestamp(until)}"


def reason_text(reason: str) -> str:
    """`` (reason: ...)`` when there is one."""
    return f" (reason: {reason})" if reason else ""


class UnknownOperator(Exception):
    """``--operator`` named a user name that has no account: the server does not start."""


class BanBook:
    """The bans of one server, by number, each address or network ban parsed once;
    those expired are passed over."""

    def __init__(self) -> None:
        self._bans: dict[int, tuple[Ban, Network | None]] = {}

    def __len__(self) -> int:
        return len(self._bans)

    def replace(self, bans: Iterable[Ban]) -> list[Ban]:
        """Hold ``bans`` (read from the store) instead of those held: the ones new or changed."""
        held = {ban_id: ban for ban_id, (ban, _) in self._bans.items()}
        self._bans = {}
        for ban in bans:
            self.add(ban)
        return [ban for ban_id, (ban, _) in self._bans.items() if held.get(ban_id) != ban]

    def add(self, ban: Ban) -> None:
        """Hold ``ban`` (a ban of the same number is replaced)."""
        if ban.ban_id is not None:
            self._bans[ban.ban_id] = (ban, _network(ban))

    def remove(self, ban_ids: Iterable[int]) -> None:
        for ban_id in ban_ids:
            self._bans.pop(ban_id, None)

    def in_force(self, now: float) -> list[Ban]:
        """The bans not expired at ``now``, by number."""
        return [
            self._bans[i][0] for i in sorted(self._bans) if not self._bans[i][0].expired(now)
        ]

    def expired(self, now: float) -> list[Ban]:
        """The bans expired at ``now``."""
        return [ban for ban, _ in self._bans.values() if ban.expired(now)]

    def find(self, username: str | None, host: str, now: float) -> Ban | None:
        """The first ban in force at ``now`` of ``username`` or of ``host``."""
        if not self._bans:
            return None
        address = _address(host)
        for ban, network in self._bans.values():
            if ban.expired(now):
                continue
            if ban.kind == "user":
                if username is not None and ban.target == username:
                    return ban
            elif address is not None and network is not None and address in network:
                return ban
        return None


@dataclass(frozen=True)
class Mute:
    """A user's messages are refused until ``until``, by the operator ``by``."""

    until: float
    by: str
    reason: str = ""


class Moderation:
    """Operators, bans and mutes of one chat state (see the module docstring).

    :param state: the chat state: its store, clock, sessions and cluster.
    """

    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.operators: set[str] = set()
        """The operators as last read from the store (for display; decisions ask the store)."""
        self.bans = BanBook()
        self.mutes: dict[str, Mute] = {}
        self.granted: tuple[str, ...] = ()
        """The names made operators at start (``--operator``), before the operators are read."""
        self._reloading = LoopingCall(self._reload_in_background)
        self._reloading.clock = state.clock  # type: ignore[assignment]

    # Loading ------------------------------------------------------------------------

    def load(self) -> defer.Deferred[None]:
        """Make :attr:`granted` operators, then read the operators and the bans from the store.

        Fails with :class:`UnknownOperator` when a granted name has no account
        (the accounts are loaded, and imported, first).
        """
        d: defer.Deferred[Any] = defer.succeed(None)
        for username in self.granted:
            d.addCallback(lambda _, name=username: self.state.store.set_operator(name, True))
            d.addCallback(self._granted, username)
        d.addCallback(lambda _: self.state.store.operators())
        d.addCallback(self._operators_read)
        d.addCallback(lambda _: self.reload_bans())
        return d

    def _granted(self, found: bool, username: str) -> None:
        if not found:
            raise UnknownOperator(
                f"--operator {username}: there is no account {username}; create it first"
                " (or import it with --credentials), or leave the option out."
            )
        log.info("{user} is an operator (--operator)", user=username)

    def start(self) -> None:
        """Read the bans again every :data:`RELOAD_SECONDS` (the service starts it)."""
        if not self._reloading.running:
            self._reloading.start(RELOAD_SECONDS, now=False)

    def stop(self) -> None:
        if self._reloading.running:
            self._reloading.stop()

    def _reload_in_background(self) -> None:
        self.state.background(self.reload_bans(), "Reading the bans from the store failed")

    def reload_bans(self) -> defer.Deferred[None]:
        """Read the bans from the store again; the sessions they match end; the expired ones go.

        The bans added with the admin tool, or on another node while this
        one was away from the cluster, take effect so.
        """
        d = self.state.store.bans()
        return d.addCallback(self._bans_read)

    def _bans_read(self, bans: list[Ban]) -> None:
        """Hold ``bans``; enforce those new here (the others were when they came)."""
        now = self.state.clock.seconds()
        fresh = self.bans.replace(bans)
        for ban in self.bans.expired(now):
            self._forget_expired(ban)
        for ban in fresh:
            self.enforce(ban)

    def _forget_expired(self, ban: Ban) -> None:
        """An expired ban: out of the book, and of the store (in the background)."""
        assert ban.ban_id is not None
        self.bans.remove([ban.ban_id])
        log.info(
            "Ban #{ban_id} of {kind} {target} expired", ban_id=ban.ban_id, kind=ban.kind,
            target=ban.target,
        )
        self.state.background(
            self.state.store.remove_ban(ban.ban_id),
            "Removing the expired ban #{ban_id} failed", ban_id=ban.ban_id,
        )

    def _operators_read(self, operators: set[str]) -> set[str]:
        self.operators = set(operators)
        return self.operators

    # Operators ----------------------------------------------------------------------

    def is_operator(self, username: str) -> defer.Deferred[bool]:
        """Whether ``username`` is an operator, as the store says now."""
        d = self.state.store.operators()
        d.addCallback(self._operators_read)
        return d.addCallback(lambda operators: username in operators)

    # Bans ---------------------------------------------------------------------------

    def in_force(self) -> list[Ban]:
        """The bans in force now."""
        return self.bans.in_force(self.state.clock.seconds())

    def find_ban(self, username: str | None, host: str) -> Ban | None:
        """The ban in force of ``username`` (``None``: any user) or of the address ``host``."""
        if not self.bans:
            return None  # (every login and connection asks)
        return self.bans.find(username, host, self.state.clock.seconds())

    def check_login(self, username: str, host: str) -> None:
        """Refuse the login of ``username`` from ``host`` if a ban in force matches.

        :raises Banned: saying until when and why.
        """
        ban = self.find_ban(username, host)
        if ban is None:
            return
        now = self.state.clock.seconds()
        log.info(
            "Refused the login of {user} from {host}: ban #{ban_id}", user=username, host=host,
            ban_id=ban.ban_id,
        )
        raise Banned(
            f"Error. You are banned from this server {until_text(ban.expires_at)}"
            f"{reason_text(ban.reason)}.",
            None if ban.expires_at is None else max(0.0, ban.expires_at - now),
        )

    def address_refusal(self, host: str) -> events.Disconnected | None:
        """What a new connection from ``host`` is told if a ban in force matches its address."""
        ban = self.find_ban(None, host)
        if ban is None:
            return None
        return events.Disconnected(
            "banned",
            f"Your address is banned from this server {until_text(ban.expires_at)}"
            f"{reason_text(ban.reason)}.",
        )

    def keep_ban(self, ban: Ban) -> defer.Deferred[tuple[Ban, int]]:
        """Keep ``ban`` in the store, then enforce it here and on the other nodes.

        The one way a ban is set, by an operator's ``ban`` or by
        ``chatservice-admin ban`` through a running server.

        :return: fires with the ban as kept (numbered) and how many sessions
            it ended on this node.
        """
        d = self.state.store.add_ban(ban)

        def kept(ban: Ban) -> tuple[Ban, int]:
            ended = self.added(ban)
            self.tell_cluster({"do": "ban", "ban": ban_to_json(ban)})
            return ban, ended

        return d.addCallback(kept)

    def lift_bans(self, key: int | str) -> defer.Deferred[int]:
        """Remove from the store the ban numbered ``key`` (an int) or the bans of ``key`` (a target);
        forget them here and on the other nodes.

        The bans are looked up in the store, not in this node's book, so that a
        ban this node has not read yet (set on another node) is lifted everywhere too.

        :return: fires with how many bans were removed (0: there was no such ban).
        """
        d = self.state.store.bans()

        def found(bans: list[Ban]) -> defer.Deferred[int]:
            ids = [
                ban.ban_id for ban in bans
                if ban.ban_id is not None and (ban.ban_id if isinstance(key, int) else ban.target) == key
            ]
            removing = self.state.store.remove_ban(key)
            return removing.addCallback(removed, ids)

        def removed(count: int, ids: list[int]) -> int:
            if count:
                self.removed(ids)
                self.tell_cluster({"do": "unban", "ids": ids})
            return count

        return d.addCallback(found)

    def added(self, ban: Ban) -> int:
        """Hold ``ban`` (kept in the store already) and enforce it here: how many sessions ended."""
        self.bans.add(ban)
        return self.enforce(ban)

    def removed(self, ban_ids: Iterable[int]) -> None:
        """Forget the bans numbered ``ban_ids`` (removed from the store already)."""
        self.bans.remove(ban_ids)

    def enforce(self, ban: Ban) -> int:
        """End this node's sessions that ``ban`` matches, telling them why: how many."""
        if ban.expired(self.state.clock.seconds()):
            return 0
        if ban.kind == "user":
            session = self.state.sessions.get(ban.target)
            matching = [] if session is None else [session]
        else:
            matching = [
                session for session in self.state.sessions.values()
                if ban_matches(ban, None, session.client.host)
            ]
        notice = events.Disconnected(
            "banned",
            f"You have been banned from this server by {ban.set_by}"
            f" {until_text(ban.expires_at)}{reason_text(ban.reason)}.",
        )
        for session in matching:
            log.info(
                "Ending the session of {user} from {host}: ban #{ban_id}",
                user=session.username, host=session.client.host, ban_id=ban.ban_id,
            )
            session.client.disconnect(notice)
        return len(matching)

    # Kicks ----------------------------------------------------------------------------

    def kick_here(self, username: str, by: str, reason: str) -> bool:
        """End ``username``'s session on this node, if it has one, telling them by whom and why."""
        session = self.state.sessions.get(username)
        if session is None:
            return False
        log.info("Kicking {user} (by {operator})", user=username, operator=by)
        session.client.disconnect(
            events.Disconnected(
                "kicked", f"You have been kicked off this server by {by}{reason_text(reason)}."
            )
        )
        return True

    # Mutes ---------------------------------------------------------------------------

    def muted(self, username: str) -> Mute | None:
        """``username``'s mute, if one is in force (an ended one is forgotten)."""
        mute = self.mutes.get(username)
        if mute is None:
            return None
        if mute.until <= self.state.clock.seconds():
            del self.mutes[username]
            return None
        return mute

    def mute(self, username: str, mute: Mute | None, notify: bool = True) -> None:
        """Mute ``username`` (or, ``None``, end its mute) on this node.

        :param notify: tell ``username``, if online here, that it is muted.
        """
        if mute is None:
            self.mutes.pop(username, None)
        else:
            self.mutes[username] = mute
            member = self.state.sessions.get(username)
            if member is not None and notify:
                member.client.deliver(
                    events.ServerNotice(
                        mute.by,
                        f"You are muted {until_text(mute.until)}{reason_text(mute.reason)}:"
                        " your messages are refused meanwhile.",
                        self.state.clock.seconds(),
                    )
                )

    def check_not_muted(self, username: str) -> None:
        """:raises CommandError: ``muted``, saying until when, if ``username`` is muted."""
        if not self.mutes:
            return
        mute = self.muted(username)
        if mute is not None:
            raise CommandError(
                "muted",
                f"Error. You are muted {until_text(mute.until)} by {mute.by}"
                f"{reason_text(mute.reason)}; your message was not sent.",
            )

    # The other nodes ------------------------------------------------------------------

    def announced(self, action: dict[str, Any]) -> None:
        """Another node's operator acted: do here what ``action`` says (see :meth:`tell_cluster`).

        ``action["do"]`` is ``ban`` (``ban``: the ban as :func:`ban_to_json`
        gives it), ``unban`` (``ids``), ``kick`` (``u``, ``by``, ``reason``)
        or ``mute`` (``u``, ``until``: ``None`` ends it, ``by``, ``reason``;
        ``quiet``: do not tell the user, read again at a node's join).
        """
        kind = action.get("do")
        if kind == "ban":
            ban = ban_from_json(action["ban"])
            self.added(ban)
        elif kind == "unban":
            self.removed(int(ban_id) for ban_id in action["ids"])
        elif kind == "kick":
            self.kick_here(action["u"], action["by"], action.get("reason", ""))
        elif kind == "mute":
            until = action.get("until")
            self.mute(
                action["u"],
                None if until is None else Mute(float(until), action["by"], action.get("reason", "")),
                notify=not action.get("quiet"),
            )
        else:
            log.warn("An operator action from another node could not be read: {action!r}", action=action)

    def tell_cluster(self, action: dict[str, Any]) -> bool:
        """Have the other nodes do ``action`` too: whether they were told (true when not clustered)."""
        cluster = self.state.cluster
        return cluster is None or cluster.moderation(action)


def ban_to_json(ban: Ban) -> dict[str, Any]:
    """``ban`` as JSON-ready data (for the other nodes)."""
    return {
        "id": ban.ban_id, "kind": ban.kind, "target": ban.target, "by": ban.set_by,
        "at": ban.set_at, "until": ban.expires_at, "reason": ban.reason,
    }


def ban_from_json(data: dict[str, Any]) -> Ban:
    """The ban :func:`ban_to_json` made ``data`` of."""
    until = data.get("until")
    return Ban(
        data["kind"], data["target"], data["by"], float(data["at"]),
        None if until is None else float(until), data.get("reason", ""), int(data["id"]),
    )
