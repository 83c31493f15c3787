"""What ``chatservice-admin`` does: :class:`AdminActions`, one implementation for both ways of doing it.

The same class serves

- **inside a running server** (built by :func:`chatservice.tap.makeService`,
  reached through the admin socket, :mod:`chatservice.admin.socket`), with
  the server's memory (:class:`LiveServer`): a deleted user's session ends,
  the cached names, blocks, rooms and last-seen times follow, the lock-outs
  are cleared, and in a cluster the other nodes are told through Redis;
- **beside no server** (the tool on a data directory no server holds, or a
  PostgreSQL store), with the store alone (``live`` is ``None``).

Every action returns a Deferred firing with plain data (what the socket
sends as JSON), or failing with :class:`AdminError`, whose ``code`` says
what went wrong.  Passwords never reach it: the tool hashes them
(:func:`~chatservice.auth.accounts.hash_and_derive`, exactly as the server
does) and sends the hash and SCRAM keys, which are checked here.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatservice.auth.credentials import (
    login_name_problem,
    normalise_username,
    username_problem,
    username_skeleton,
)
from chatservice.auth.directory import StoredAccounts
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.passwords import check_hash_format, is_hashed
from chatservice.auth.scram import ScramKeys
from chatservice.auth.slowdown import LoginSlowdown
from chatservice.retention import BATCH
from chatservice.moderation import BadBanTarget, ban_key, ban_target
from chatservice.store.interface import Ban, HistoryEntry, HistoryPosition, StoredMessage, UserData

__all__ = ["AdminActions", "AdminError", "LiveServer", "PURGE_BATCH"]

log = Logger()

BANNED_BY = "chatservice-admin"
"""Who a ban set with the tool was set by, as the ban says."""

PURGE_BATCH = BATCH
"""History entries one store call forgets or reads at most (a purge, a delete, an export),
each call on its own reactor turn: as many as a batch of the history retention."""


class AdminError(Exception):
    """An action that cannot be done.

    :param code: ``unknown_user``, ``invalid_username``, ``taken``,
        ``invalid_secret``, ``invalid_request``, ``not_running`` (an action
        that needs a running server), ``unavailable`` (Redis unreachable).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class LiveServer:
    """The running server's memory, for the actions run inside it.

    :param state: the chat state (sessions, blocks, rooms, last-seen times).
    :param lockouts: the login lock-outs (by name at an address, and by address).
    :param slowdown: the login slowdown of names failing from many addresses.
    :param cluster: this node's part in a cluster, or ``None``.
    """

    state: Any
    lockouts: Sequence[LoginLockout]
    slowdown: LoginSlowdown
    cluster: Any = None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def _existing_name(
    username: Any, problem_of: Callable[[str], str | None] = login_name_problem
) -> str:
    """``username`` (normalised) as the name of an account that may exist, or :class:`AdminError`.

    :param problem_of: the rule it must pass (a new account's name: :func:`username_problem`).
    """
    if not isinstance(username, str):
        raise AdminError("invalid_request", "a user name is text")
    username = normalise_username(username)
    problem = problem_of(username)
    if problem:
        raise AdminError("invalid_username", f"Invalid user name: {problem}.")
    return username


def _hashed(secret: Any, scram: Any) -> tuple[str, ScramKeys]:
    """The hash and keys the tool sent, checked (the tool hashes; a plain secret is refused)."""
    if not isinstance(secret, str) or not is_hashed(secret) or check_hash_format(secret):
        raise AdminError("invalid_secret", "the password must come as a scrypt hash")
    try:
        return secret, ScramKeys.parse(scram if isinstance(scram, str) else "")
    except ValueError as e:
        raise AdminError("invalid_secret", f"the SCRAM keys are not usable: {e}") from None


class AdminActions:
    """Every administration action, on the store (and the running server's memory if given).

    :param accounts: the accounts (in the store, which is ``accounts.store``).
    :param clock: the reactor: the time of an export, relative purges, and
        the turns between purge batches.
    :param live: the running server's memory (``None``: no server runs).
    """

    def __init__(
        self, accounts: StoredAccounts, clock: IReactorTime, live: LiveServer | None = None
    ) -> None:
        self.accounts = accounts
        self.store = accounts.store
        self.clock = clock
        self.live = live

    # Accounts ---------------------------------------------------------------------

    async def list_accounts(self) -> list[dict[str, Any]]:
        """Every account: ``user``, ``operator``, ``last_seen`` (seconds and ISO 8601) and, with a server, ``online``."""
        names = await self.store.usernames()
        seen = dict(await self.store.last_seen())
        operators = await self.store.operators()
        rows = []
        for name in names:
            row: dict[str, Any] = {
                "user": name,
                "operator": name in operators,
                "last_seen": seen.get(name),
                "last_seen_iso": _iso(seen.get(name)),
            }
            if self.live is not None:
                row["online"] = self.live.state.online(name) is not None
            rows.append(row)
        return rows

    async def add(self, username: Any, secret: Any, scram: Any) -> dict[str, Any]:
        """Create an account with a new name (the server's rules: :func:`username_problem`, look-alikes)."""
        username = _existing_name(username, username_problem)
        secret, keys = _hashed(secret, scram)
        await self._check_free(username)
        if not await self.accounts.add(username, secret, keys):
            raise AdminError("taken", f"The user name {username} is taken.")
        log.info("Administration: account {user} added", user=username)
        return {"user": username, "action": "added"}

    async def _check_free(self, username: str) -> None:
        """Refuse a name that is an account, looks like one, or is an online guest's."""
        skeleton = username_skeleton(username)
        for name in await self.store.usernames():
            if name == username:
                raise AdminError("taken", f"The user name {username} is taken.")
            if username_skeleton(name) == skeleton:
                raise AdminError(
                    "taken", f"The user name {username} is taken: it looks too like {name}."
                )
        if self.live is not None and self.live.state.guest_online(username):
            raise AdminError("taken", f"The user name {username} is a guest's, online now.")

    async def set_password(
        self, username: Any, secret: Any, scram: Any, create: bool = False
    ) -> dict[str, Any]:
        """Give an account a new password (hash and keys): ``changed``, or ``added`` with ``create``.

        Takes effect at once: every login reads the account from the store.
        """
        username = _existing_name(username)
        secret, keys = _hashed(secret, scram)
        if await self.accounts.set_secret(username, secret, keys):
            log.info("Administration: password of {user} changed", user=username)
            return {"user": username, "action": "changed"}
        if not create:
            raise AdminError("unknown_user", f"There is no account {username}.")
        return await self.add(username, secret, scram)

    async def remove(self, username: Any) -> dict[str, Any]:
        """Delete an account and what is kept about the user; what they sent stays with its readers."""
        return await self._delete(_existing_name(username), sent=False)

    async def delete(self, username: Any) -> dict[str, Any]:
        """Delete an account with all its data, what the user sent included (their history entries too)."""
        return await self._delete(_existing_name(username), sent=True)

    async def _delete(self, username: str, sent: bool) -> dict[str, Any]:
        if await self.store.account(username) is None:
            raise AdminError("unknown_user", f"There is no account {username}.")
        live = self.live
        if live is not None:
            # The session ends first, so that nothing it does lands after the
            # store's deletion; memory and the other nodes follow at once.
            live.state.remove_user(username)
        if sent:
            # While the account still holds the name: nobody else can take it
            # and post meanwhile (what a new account says is not forgotten).
            await self._batches(lambda: self.store.forget_history_of(username, PURGE_BATCH))
        await self.store.delete_user(username, sent)
        self.accounts.removed(username)
        if live is not None and username in live.state.sessions:
            # A login that got in meanwhile (between the batches) ends too.
            live.state.remove_user(username)
        log.info(
            "Administration: account {user} {what}",
            user=username, what="deleted with everything it sent" if sent else "removed",
        )
        result: dict[str, Any] = {"user": username, "action": "deleted" if sent else "removed"}
        warnings = []
        imported = self.accounts.imported
        if imported is not None and imported.exists(username):
            warnings.append(
                f"{username} is in the credentials file {imported.path}, which the server"
                " imports at start: remove the line, or the account comes back at the next start"
            )
        if self._granted_at_start(username):
            warnings.append(
                f"the server was started with --operator {username}: remove the option,"
                " or the server refuses to start the next time (there is no such account)"
            )
        if warnings:
            result["warning"] = "; ".join(warnings)
        return result

    def _granted_at_start(self, username: str) -> bool:
        """Whether the running server makes ``username`` an operator at each start (``--operator``)."""
        return self.live is not None and username in self.live.state.moderation.granted

    # Operators ---------------------------------------------------------------------

    async def grant(self, username: Any) -> dict[str, Any]:
        """Make an account an operator: at once (the server asks the store at each operator command)."""
        return await self._set_operator(_existing_name(username), True)

    async def revoke(self, username: Any) -> dict[str, Any]:
        """Make an operator an ordinary account again, at once."""
        return await self._set_operator(_existing_name(username), False)

    async def _set_operator(self, username: str, operator: bool) -> dict[str, Any]:
        if not await self.store.set_operator(username, operator):
            raise AdminError("unknown_user", f"There is no account {username}.")
        if self.live is not None:
            # Its copy for display; every decision asks the store.
            await self.live.state.moderation.is_operator(username)
        log.info(
            "Administration: {user} {what}", user=username,
            what="made an operator" if operator else "no longer an operator",
        )
        result: dict[str, Any] = {"user": username, "action": "granted" if operator else "revoked"}
        if not operator and self._granted_at_start(username):
            result["warning"] = (
                f"the server was started with --operator {username}: remove the option,"
                f" or {username} is an operator again at the next start"
            )
        return result

    # Bans --------------------------------------------------------------------------

    async def ban(self, target: Any, duration: Any = None, reason: Any = "") -> dict[str, Any]:
        """Ban an account, an address or a network (CIDR), for ``duration`` seconds or for good.

        Kept in the store; inside a server the sessions it matches end at
        once, on every node (as an operator's ``ban``).
        """
        if not isinstance(target, str) or not isinstance(reason, str):
            raise AdminError("invalid_request", "a ban's target and reason are text")
        if duration is not None and not (
            isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 0
        ):
            raise AdminError("invalid_request", "a ban's duration is a number of seconds")
        try:
            kind, name = ban_target(target)
        except BadBanTarget as e:
            raise AdminError("invalid_request", f"{e}.") from None
        if kind == "user":
            name = _existing_name(name)
            online = self.live is not None and self.live.state.online(name) is not None
            if not online and await self.store.account(name) is None:
                raise AdminError("unknown_user", f"There is no account {name}.")
        now = self.clock.seconds()
        ban = Ban(kind, name, BANNED_BY, now, None if duration is None else now + duration, reason)
        result: dict[str, Any]
        if self.live is not None:
            # As an operator's ban: kept, then enforced here and on every node.
            kept, ended = await self.live.state.moderation.keep_ban(ban)
            result = {"ban": _ban(kept), "sessions_ended": ended}
        else:
            kept = await self.store.add_ban(ban)
            result = {"ban": _ban(kept)}
        log.info("Administration: ban #{n} of {kind} {target}", n=kept.ban_id, kind=kind, target=name)
        return result

    async def unban(self, target: Any) -> dict[str, Any]:
        """Remove the ban numbered ``target`` (``3`` or ``#3``), or the bans of what ``target`` names."""
        if not isinstance(target, str):
            raise AdminError("invalid_request", "a ban's target is text")
        try:
            key = ban_key(target)
        except BadBanTarget as e:
            raise AdminError("invalid_request", f"{e}.") from None
        if self.live is not None:
            # As an operator's unban: out of the store, then of every node's bans.
            removed = await self.live.state.moderation.lift_bans(key)
        else:
            removed = await self.store.remove_ban(key)
        if not removed:
            raise AdminError("no_such_ban", f"There is no ban of {target}.")
        log.info("Administration: {n} ban(s) of {key} removed", n=removed, key=str(key))
        return {"target": str(key), "removed": removed}

    async def bans(self) -> list[dict[str, Any]]:
        """The bans in force (the expired ones are left out)."""
        now = self.clock.seconds()
        return [_ban(ban) for ban in await self.store.bans() if not ban.expired(now)]

    # Export ------------------------------------------------------------------------

    async def export(self, username: Any) -> dict[str, Any]:
        """Everything the server keeps about a user, as JSON-ready data (never the password's hash)."""
        username = _existing_name(username)
        account = await self.store.account(username)
        data: UserData = await self.store.user_data(username)
        history: list[HistoryEntry] = []
        start = HistoryPosition(float("-inf"), "", 0)
        while True:
            page = await self.store.history_of(username, start, PURGE_BATCH)
            history += page
            if len(page) < PURGE_BATCH:
                break
            start = page[-1].position
            await task.deferLater(self.clock, 0, lambda: None)
        bans = await self.store.bans()
        banned = [_ban(ban) for ban in bans if ban.kind == "user" and ban.target == username]
        bans_set = [_ban(ban) for ban in bans if ban.set_by == username]
        if (
            account is None and not history and not banned and not bans_set
            and data == UserData(False, (), (), (), None, (), ())
        ):
            raise AdminError("unknown_user", f"Nothing is kept about {username}.")
        exported: dict[str, Any] = {
            "user": username,
            "exported_at": _iso(self.clock.seconds()),
            "account": None if account is None else {
                "password": "scrypt hash (kept, not exported)" if is_hashed(account[0])
                else "plain text from a sample credentials file (kept, not exported)",
                "scram_keys": account[1] is not None,
                "operator": username in await self.store.operators(),
            },
            "blocking": list(data.blocking),
            "blocked_by": list(data.blocked_by),
            "rooms": list(data.rooms),
            "last_seen": _iso(data.last_seen),
            "messages_to": [_message(m, "from", m.sender) for m in data.messages_to],
            "messages_from": [_message(m, "to", m.recipient) for m in data.messages_from],
            "history": [_entry(e) for e in history],
            "bans": banned,
            "bans_set": bans_set,
        }
        if self.live is not None:
            exported["online"] = self.live.state.online(username) is not None
        return exported

    # Lock-outs ---------------------------------------------------------------------

    async def unlock(self, username: Any = None, address: Any = None) -> dict[str, Any]:
        """Clear the login failures and locks of a user name (at every address) or of an address, on every node.

        Lock-outs live in the running server's memory (and in Redis when
        clustered): without a running server there is nothing to clear.
        """
        if (username is None) == (address is None):
            raise AdminError("invalid_request", "give one of username or address")
        if address is not None:
            try:
                key, kind = str(ipaddress.ip_address(address)), "address"
            except ValueError:
                raise AdminError("invalid_request", f"not an IP address: {address!r}") from None
        else:
            key, kind = _existing_name(username), "user"
        live = self.live
        if live is None:
            raise AdminError(
                "not_running",
                "Lock-outs live in the running server's memory; no server runs, so none is held.",
            )
        locks = sum(lockout.unlock(key) for lockout in live.lockouts if lockout.kind == kind)
        result: dict[str, Any] = {kind: key, "locks": locks}
        if kind == "user":
            result["slowed"] = live.slowdown.forgive(key)
        if live.cluster is not None:
            try:
                result["redis_keys"] = await live.cluster.unlock(kind, key)
            except ConnectionError as e:
                raise AdminError(
                    "unavailable",
                    f"Unlocked on this node only: Redis cannot be reached ({e}).",
                ) from None
        log.info("Administration: {key} unlocked ({locks} locks)", key=key, locks=locks)
        return result

    # History -----------------------------------------------------------------------

    async def purge(self, before: Any = None, older_than: Any = None) -> dict[str, Any]:
        """Forget the history sent before ``before`` (seconds), or more than ``older_than`` seconds ago.

        In batches of :data:`PURGE_BATCH`, each on its own reactor turn.
        """
        given = [value for value in (before, older_than) if value is not None]
        if len(given) != 1 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in given
        ):
            raise AdminError("invalid_request", "give one of before or older_than, in seconds")
        if before is None:
            before = self.clock.seconds() - older_than
        purged = await self._batches(
            lambda: self.store.purge_history(float(before), None, PURGE_BATCH)
        )
        log.info("Administration: {n} history entries before {t} purged", n=purged, t=_iso(before))
        return {"purged": purged, "before": float(before), "before_iso": _iso(before)}

    async def _batches(self, batch: Callable[[], defer.Deferred[int]]) -> int:
        """Run ``batch`` (forgetting at most :data:`PURGE_BATCH`) until it forgets fewer: how many in all.

        Each batch after the first on a later reactor turn, so that a long
        deletion never holds the reactor (or the database) for long.
        """
        done = 0
        while True:
            removed = await batch()
            done += removed
            if removed < PURGE_BATCH:
                return done
            await task.deferLater(self.clock, 0, lambda: None)

    # The requests of the admin socket -------------------------------------------------

    def run(self, request: dict[str, Any]) -> defer.Deferred[Any]:
        """Carry out one request (``{"action": ..., arguments...}``): its result, or :class:`AdminError`."""
        name = request.get("action")
        call = _REQUESTS.get(name) if isinstance(name, str) else None
        if call is None:
            return defer.fail(AdminError("invalid_request", f"no such action: {name!r}"))
        method, arguments = call
        unknown = set(request) - {"action", "id", *arguments}
        if unknown:
            return defer.fail(
                AdminError("invalid_request", f"unknown fields: {', '.join(sorted(unknown))}")
            )
        kwargs = {key: request[key] for key in arguments if key in request}
        if not isinstance(kwargs.get("create", False), bool):
            return defer.fail(AdminError("invalid_request", "create is true or false"))
        try:
            work = getattr(self, method)(**kwargs)
        except TypeError:
            return defer.fail(
                AdminError("invalid_request", f"{name} takes {', '.join(arguments) or 'nothing'}")
            )
        return defer.ensureDeferred(work)


_REQUESTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "list": ("list_accounts", ()),
    "add": ("add", ("username", "secret", "scram")),
    "passwd": ("set_password", ("username", "secret", "scram", "create")),
    "remove": ("remove", ("username",)),
    "delete": ("delete", ("username",)),
    "export": ("export", ("username",)),
    "unlock": ("unlock", ("username", "address")),
    "ban": ("ban", ("target", "duration", "reason")),
    "unban": ("unban", ("target",)),
    "bans": ("bans", ()),
    "grant": ("grant", ("username",)),
    "revoke": ("revoke", ("username",)),
    "purge": ("purge", ("before", "older_than")),
}
"""Each request's action name: the method and the fields it takes."""


def _message(message: StoredMessage, role: str, other: str) -> dict[str, Any]:
    return {
        "id": message.message_id,
        role: other,
        "text": message.text,
        "sent_at": _iso(message.sent_at),
    }


def _ban(ban: Ban) -> dict[str, Any]:
    return {
        "id": ban.ban_id,
        "kind": ban.kind,
        "target": ban.target,
        "set_by": ban.set_by,
        "set_at": _iso(ban.set_at),
        "until": _iso(ban.expires_at),
        "reason": ban.reason,
    }


def _entry(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "channel": entry.channel,
        "seq": entry.seq,
        "text": entry.text,
        "sent_at": _iso(entry.sent_at),
    }
