"""The other nodes' users as one node holds them (chatservice.cluster.roster): indexes and tallies."""

from __future__ import annotations

import random
from dataclasses import dataclass

from twisted.trial import unittest

from chatservice.cluster.roster import RemoteRoster, tally_group


@dataclass(eq=False)
class Member:
    username: str
    node: str
    auto_reply: str | None = None


def counted_one_by_one(members: list[Member], sender: str, left_out: set[str], busy_miss: bool) -> dict[str, tuple[int, int, int, int]]:
    """(reached, skipped, busy, delivered) by node, member by member, as nodes counted before the roster."""
    found: dict[str, list[int]] = {}
    for member in members:
        if member.username == sender:
            continue
        counts = found.setdefault(member.node, [0, 0, 0, 0])
        counts[0] += 1
        if member.username in left_out:
            counts[1] += 1
        elif busy_miss and member.auto_reply is not None:
            counts[2] += 1
        else:
            counts[3] += 1
    return {node: tuple(c) for node, c in found.items()}  # type: ignore[misc]


def tallied(roster: RemoteRoster, sender: str, left_out: set[str], busy_miss: bool) -> dict[str, tuple[int, int, int, int]]:
    return {
        t.node: (t.reached, t.skipped, len(t.busy), t.delivered)
        for t in roster.tally(sender, left_out, busy_miss)
    }


class RemoteRosterTests(unittest.TestCase):
    def test_a_mapping_by_name(self) -> None:
        a, b = Member("a", "n1"), Member("b", "n2")
        roster = RemoteRoster([a, b])
        self.assertEqual(len(roster), 2)
        self.assertIs(roster["a"], a)
        self.assertIs(roster.get("b"), b)
        self.assertIsNone(roster.get("c"))
        self.assertIn("a", roster)
        self.assertEqual(sorted(roster), ["a", "b"])
        self.assertEqual(sorted(m.username for m in roster.values()), ["a", "b"])

    def test_a_user_moving_node_is_held_once(self) -> None:
        roster = RemoteRoster([Member("a", "n1")])
        moved = Member("a", "n2")
        roster.add(moved)
        self.assertEqual(len(roster), 1)
        self.assertEqual(roster.nodes(), ["n2"])
        self.assertEqual(roster.on_node("n2"), [moved])
        self.assertEqual(roster.on_node("n1"), [])

    def test_remove_empties_a_node(self) -> None:
        roster = RemoteRoster([Member("a", "n1"), Member("b", "n1", "away")])
        self.assertIsNotNone(roster.remove("b"))
        self.assertIsNone(roster.remove("b"))
        self.assertEqual(tallied(roster, "x", set(), True), {"n1": (1, 0, 0, 1)})
        roster.remove("a")
        self.assertEqual(roster.nodes(), [])
        self.assertEqual(roster.tally("x", set(), True), [])

    def test_busy_changes_follow(self) -> None:
        member = Member("a", "n1")
        roster = RemoteRoster([member])
        member.auto_reply = "away"
        roster.busy_changed(member)
        self.assertEqual(tallied(roster, "x", set(), True), {"n1": (1, 0, 1, 0)})
        stale = Member("a", "n1", "old copy")
        roster.busy_changed(stale)  # not the copy held: ignored
        member.auto_reply = None
        roster.busy_changed(member)
        self.assertEqual(tallied(roster, "x", set(), True), {"n1": (1, 0, 0, 1)})

    def test_tallies_match_counting_member_by_member(self) -> None:
        """Random rosters, changes, senders, blockers and busy users: the same counts as a loop over everyone."""
        for seed in range(30):
            rng = random.Random(seed)
            names = [f"u{i}" for i in range(40)]
            members: dict[str, Member] = {}
            roster = RemoteRoster()
            for _ in range(120):
                name = rng.choice(names)
                action = rng.random()
                if action < 0.5:
                    member = Member(name, rng.choice(["n1", "n2", "n3"]), rng.choice([None, None, "away"]))
                    members[name] = member
                    roster.add(member)
                elif action < 0.7:
                    members.pop(name, None)
                    roster.remove(name)
                elif name in members:
                    member = members[name]
                    member.auto_reply = None if member.auto_reply else "busy"
                    roster.busy_changed(member)
                sender = rng.choice(names + ["", "local"])
                left_out = set(rng.sample(names, rng.randrange(4)))
                busy_miss = rng.random() < 0.7
                self.assertEqual(
                    tallied(roster, sender, left_out, busy_miss),
                    counted_one_by_one(list(members.values()), sender, left_out, busy_miss),
                    f"seed {seed}",
                )

    def test_a_group_is_counted_by_the_same_rules(self) -> None:
        """A fan-out to some users (a room): tally_group per node as the roster counts everyone."""
        rng = random.Random(7)
        for _ in range(50):
            members = [Member(f"u{i}", rng.choice(["n1", "n2"]), rng.choice([None, "away"])) for i in range(12)]
            chosen = rng.sample(members, rng.randrange(1, 12))
            left_out = {m.username for m in rng.sample(members, 3)}
            busy_miss = rng.random() < 0.5
            by_node: dict[str, list[Member]] = {}
            for member in chosen:
                by_node.setdefault(member.node, []).append(member)
            self.assertEqual(
                {
                    t.node: (t.reached, t.skipped, len(t.busy), t.delivered)
                    for t in (tally_group(node, group, left_out, busy_miss) for node, group in by_node.items())
                },
                counted_one_by_one(chosen, "", left_out, busy_miss),
            )
