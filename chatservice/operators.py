"""The operator commands, as methods of a session: :class:`OperatorCommands`.

:class:`~chatservice.session.Session` runs every command through
:meth:`OperatorCommands.as_operator` when the command table marks it an
operator command: the store is asked whether the user is an operator
(:meth:`~chatservice.moderation.Moderation.is_operator`), and a user who is
not one is answered exactly as for an unknown command (the attempt is
logged).  Each action an operator takes is logged with structured fields
(``operator``, ``action``, ``target``, ``reason``, ``outcome``).

What the commands change and enforce is :mod:`chatservice.moderation`'s;
these methods check the request, change the store, and tell the other nodes
of a cluster.  An operator cannot kick, ban or mute themselves (nor ban an
address or network that includes their own address); other operators may
be, like anyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice import events
from chatservice.commands import CommandError, Request, invalid_command
from chatservice.delivery import EVERYONE, Delivery, DeliveryReport
from chatservice.moderation import BadBanTarget, Mute, ban_key, ban_matches, ban_target
from chatservice.reload import ReloadError
from chatservice.store.interface import Ban

if TYPE_CHECKING:
    from chatservice.interfaces import ClientConnection
    from chatservice.state import ChatState

log = Logger()

class OperatorCommands:
    """The operator commands of a session (mixed into :class:`~chatservice.session.Session`)."""

    __slots__ = ()

    if TYPE_CHECKING:
        state: ChatState
        username: str
        client: ClientConnection
        last_active: float

        def _check_other_user(self, username: str) -> None: ...

    # The gate ---------------------------------------------------------------------------

    def as_operator(
        self, handler: Callable[..., Any], request: Request
    ) -> defer.Deferred[events.Event]:
        """Run ``handler`` for ``request`` if this user is an operator; else the invalid-command error."""
        d = self.state.moderation.is_operator(self.username)
        return d.addCallback(self._operator_checked, handler, request)

    def _operator_checked(
        self, operator: bool, handler: Callable[..., Any], request: Request
    ) -> defer.Deferred[events.Event]:
        arguments = request.arguments
        fields = {
            "operator": self.username,
            "action": request.command,
            "target": str(arguments.get("target") or ""),
            "reason": str(arguments.get("reason") or ""),
        }
        if not operator:
            log.warn(
                "Refused {action} {target} by {operator}: not an operator",
                outcome="not an operator", **fields,
            )
            raise invalid_command()
        self.state.metrics.command(request.command)
        problem = request.problem
        message = arguments.get("message")
        limit = self.state.max_message_length
        if problem is None and isinstance(message, str) and len(message) > limit:
            problem = CommandError(
                "message_too_long", f"Error. Messages are limited to {limit} characters."
            )
        if problem is not None:
            log.info(
                "Operator {operator}: {action} refused: {outcome}",
                outcome=problem.message, **fields,
            )
            raise problem
        d = defer.maybeDeferred(handler, self, **arguments)

        def done(reply: events.Event) -> events.Event:
            log.info(
                "Operator {operator}: {action} {target}{because}",
                because=f" ({fields['reason']})" if fields["reason"] else "",
                outcome="done", **fields,
            )
            return reply

        def refused(failure: Failure) -> Failure:
            if failure.check(CommandError):
                log.info(
                    "Operator {operator}: {action} {target} refused: {outcome}",
                    outcome=failure.value.message, **fields,
                )
            return failure

        return d.addCallbacks(done, refused)

    def _not_me(self, target: str, what: str) -> None:
        if target == self.username:
            raise CommandError("self", f"Error. You cannot {what} yourself.")

    def _online(self, target: str) -> None:
        if self.state.online(target) is None:
            raise CommandError("offline", f"Error. {target} is not online.")

    # kick ---------------------------------------------------------------------------------

    def kick(self, target: str, reason: str | None) -> events.OperatorDone:
        """End ``target``'s session (on whichever node has it), telling them by whom and why."""
        self._not_me(target, "kick")
        self._online(target)
        reason = reason or ""
        moderation = self.state.moderation
        if not moderation.kick_here(target, self.username, reason) and not moderation.tell_cluster(
            {"do": "kick", "u": target, "by": self.username, "reason": reason}
        ):
            raise CommandError(
                "unavailable",
                f"Error. {target} is on another server of this chat service, which cannot be"
                " reached right now; try again.",
            )
        return events.OperatorDone("kick", target, 1, reason=reason)

    # ban, unban, bans -------------------------------------------------------------------

    def ban(
        self, target: str, duration: float | None, reason: str | None
    ) -> defer.Deferred[events.OperatorDone]:
        """Ban a user, an address or a network, for ``duration`` seconds (``None``: for good).

        Kept in the store first; then the sessions it matches end, here and
        on the other nodes.
        """
        kind, name = _checked(ban_target, target)
        now = self.state.clock.seconds()
        ban = Ban(
            kind, name, self.username, now, None if duration is None else now + duration,
            reason or "",
        )
        if kind == "user":
            self._not_me(name, "ban")
            d = self.state.find_user(name)
            d.addCallback(self._ban_if_found, ban)
            return d
        if ban_matches(ban, None, self.client.host):
            raise CommandError(
                "self", f"Error. {name} includes your own address ({self.client.host})."
            )
        return self._keep_ban(ban)

    def _ban_if_found(self, found: bool, ban: Ban) -> defer.Deferred[events.OperatorDone]:
        if not found:
            raise CommandError("invalid_user", f"Error. Invalid user {ban.target}.")
        return self._keep_ban(ban)

    def _keep_ban(self, ban: Ban) -> defer.Deferred[events.OperatorDone]:
        d = self.state.moderation.keep_ban(ban)
        return d.addCallback(self._ban_kept)

    def _ban_kept(self, kept: tuple[Ban, int]) -> events.OperatorDone:
        ban, ended = kept
        return events.OperatorDone(
            "ban", ban.target, ended, ban.expires_at, ban.ban_id, ban.kind, ban.reason
        )

    def unban(self, target: str) -> defer.Deferred[events.OperatorDone]:
        """Remove the ban numbered ``target`` (``3`` or ``#3``), or the bans of what ``target`` names."""
        key = _checked(ban_key, target)
        d = self.state.moderation.lift_bans(key)

        def removed(count: int) -> events.OperatorDone:
            if not count:
                raise CommandError("no_such_ban", f"Error. There is no ban of {target}.")
            return events.OperatorDone("unban", str(key), count)

        return d.addCallback(removed)

    def list_bans(self) -> defer.Deferred[events.BanReport]:
        """The bans in force, read from the store (the admin tool's too)."""
        moderation = self.state.moderation
        d = moderation.reload_bans()
        return d.addCallback(
            lambda _: events.BanReport(
                tuple(
                    (ban.ban_id or 0, ban.kind, ban.target, ban.set_by, ban.set_at,
                     ban.expires_at, ban.reason)
                    for ban in moderation.in_force()
                )
            )
        )

    # mute, unmute -------------------------------------------------------------------------

    def mute(self, target: str, duration: float, reason: str | None) -> events.OperatorDone:
        """Refuse ``target``'s messages for ``duration`` seconds, on every node."""
        self._check_other_user(target)
        until = self.state.clock.seconds() + duration
        reason = reason or ""
        self.state.moderation.mute(target, Mute(until, self.username, reason))
        self.state.moderation.tell_cluster(
            {"do": "mute", "u": target, "until": until, "by": self.username, "reason": reason}
        )
        return events.OperatorDone("mute", target, until=until, reason=reason)

    def unmute(self, target: str) -> events.OperatorDone:
        """End ``target``'s mute."""
        moderation = self.state.moderation
        if moderation.muted(target) is None:
            raise CommandError("not_muted", f"Error. {target} is not muted.")
        moderation.mute(target, None)
        moderation.tell_cluster({"do": "mute", "u": target, "until": None, "by": self.username})
        return events.OperatorDone("unmute", target)

    # announce -----------------------------------------------------------------------------

    def announce(self, message: str) -> defer.Deferred[events.OperatorDone]:
        """A server notice to everyone online (busy, hidden, on every node; blocks do not apply)."""
        notice = events.ServerNotice(self.username, message, self.state.clock.seconds())
        d = self.state.deliver(notice, self.username, EVERYONE, Delivery.PLAIN)

        def sent(report: DeliveryReport) -> events.OperatorDone:
            return events.OperatorDone("announce", "", report.delivered)

        return d.addCallback(sent)

    # whois -----------------------------------------------------------------------------------

    def whois(self, target: str) -> events.WhoisReport:
        """What the server knows of ``target``, who must be online (hidden too)."""
        member = self.state.online(target)
        if member is None:
            raise CommandError("offline", f"Error. {target} is not online.")
        client = member.client
        cluster = self.state.cluster
        local = self.state.sessions.get(target) is member
        last_active = getattr(member, "last_active", None) if local else None
        return events.WhoisReport(
            target,
            client.host,
            member.logged_in_at,
            None if last_active is None else max(0.0, self.state.clock.seconds() - last_active),
            getattr(client, "kind", ""),
            getattr(client, "secure", None),
            member.auto_reply is not None,
            member.hidden,
            member.guest,
            target in self.state.moderation.operators,
            None if cluster is None else (cluster.name if local else getattr(client, "node", None)),
        )

    # rehash -----------------------------------------------------------------------------------

    def rehash(self) -> defer.Deferred[events.RehashReport]:
        """Have the server reload its configuration: what changed."""
        reload = self.state.rehash
        if reload is None:
            raise CommandError(
                "unavailable", "Error. Reloading the configuration is not available on this server."
            )
        d = reload(self.username)
        d.addCallbacks(lambda lines: events.RehashReport(tuple(lines)), _reload_refused)
        return d


_Parsed = TypeVar("_Parsed")


def _checked(parse: Callable[[str], _Parsed], target: str) -> _Parsed:
    """``parse(target)``, a bad target being the operator's ``bad_argument`` error."""
    try:
        return parse(target)
    except BadBanTarget as e:
        raise CommandError("bad_argument", f"Error. {e}.") from None


def _reload_refused(failure: Failure) -> events.RehashReport:
    """A reload that did not happen, as the operator's error reply (the log has each problem)."""
    failure.trap(ReloadError)
    raise CommandError(
        "reload_refused",
        f"Error. Nothing was reloaded: {failure.value}; the previous settings stay in force.",
    )
