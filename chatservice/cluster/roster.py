"""The users online on the other nodes, as one node knows them: :class:`RemoteRoster`.

A fan-out to everyone reports how many of the other nodes' users it
reached, skipped (they blocked the sender) or found busy.  Counted member by
member that is a Python loop over every other node's user for every
broadcast, as costly as delivering to them; the roster keeps them by node
and the busy ones apart, so that a report costs a step per node, per
blocker and per busy user instead (:meth:`RemoteRoster.tally`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["NodeTally", "RemoteRoster", "RosterMember", "tally_group"]


class RosterMember(Protocol):
    """What the roster needs of a user on another node."""

    username: str
    auto_reply: str | None

    @property
    def node(self) -> str: ...


@dataclass
class NodeTally:
    """One node's part of a fan-out to everyone, as this node counts it from its copies.

    :param reached: the node's users the fan-out is for (the sender left out).
    :param skipped: those left out by the rule (they blocked the sender).
    :param busy: those busy (they miss it; each may auto-reply).
    """

    node: str
    reached: int
    skipped: int = 0
    busy: list[RosterMember] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.reached - self.skipped - len(self.busy)


class RemoteRoster(Mapping[str, RosterMember]):
    """The other nodes' users by name, also by node and busy or not.

    Change it only through :meth:`add`, :meth:`remove` and, when a member's
    busy state changed, :meth:`busy_changed`, so the indexes stay in step.
    """

    __slots__ = ("_members", "_by_node", "_busy")

    def __init__(self, members: Iterator[RosterMember] | Collection[RosterMember] = ()) -> None:
        self._members: dict[str, RosterMember] = {}
        self._by_node: dict[str, dict[str, RosterMember]] = {}
        self._busy: dict[str, RosterMember] = {}
        for member in members:
            self.add(member)

    def __getitem__(self, username: str) -> RosterMember:
        return self._members[username]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, username: object) -> bool:
        return username in self._members

    def get(self, username: str, default: RosterMember | None = None) -> RosterMember | None:  # type: ignore[override]
        return self._members.get(username, default)

    def values(self) -> ValuesView[RosterMember]:
        return self._members.values()

    def add(self, member: RosterMember) -> None:
        """Hold ``member`` (in place of any earlier copy of the same user)."""
        self.remove(member.username)
        self._members[member.username] = member
        self._by_node.setdefault(member.node, {})[member.username] = member
        if member.auto_reply is not None:
            self._busy[member.username] = member

    def remove(self, username: str) -> RosterMember | None:
        """Forget ``username``; the copy that was held, if any."""
        member = self._members.pop(username, None)
        if member is None:
            return None
        on_node = self._by_node[member.node]
        del on_node[username]
        if not on_node:
            del self._by_node[member.node]
        self._busy.pop(username, None)
        return member

    def busy_changed(self, member: RosterMember) -> None:
        """``member`` (held) became busy or available."""
        if self._members.get(member.username) is not member:
            return
        if member.auto_reply is None:
            self._busy.pop(member.username, None)
        else:
            self._busy[member.username] = member

    def nodes(self) -> list[str]:
        """The nodes with users online."""
        return list(self._by_node)

    def on_node(self, node: str) -> list[RosterMember]:
        """The users online on ``node``."""
        return list(self._by_node.get(node, {}).values())

    def tally(self, sender: str, left_out: Collection[str], busy_miss: bool) -> list[NodeTally]:
        """Each node's part of a fan-out to everyone from ``sender``.

        :param left_out: users the rule leaves out (who blocked the sender,
            for a message): counted as skipped where they are online.
        :param busy_miss: whether busy users miss it (a message: they are
            counted busy, and may auto-reply) or get it like the others.
        """
        tallies = {
            node: NodeTally(node, len(members) - (sender in members))
            for node, members in self._by_node.items()
        }
        members = self._members
        for name in left_out:
            member = members.get(name)
            if member is not None and name != sender:
                tallies[member.node].skipped += 1
        if busy_miss:
            for name, member in self._busy.items():
                if name != sender and name not in left_out:
                    tallies[member.node].busy.append(member)
        return [tally for tally in tallies.values() if tally.reached]


def tally_group(node: str, group: list[RosterMember], left_out: Collection[str], busy_miss: bool) -> NodeTally:
    """``node``'s part of a fan-out to ``group`` (some of its users, the sender not among
    them), by the rules :meth:`RemoteRoster.tally` counts everyone's with."""
    tally = NodeTally(node, len(group))
    for member in group:
        if member.username in left_out:
            tally.skipped += 1
        elif busy_miss and member.auto_reply is not None:
            tally.busy.append(member)
    return tally
