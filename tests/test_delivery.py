"""Tests for :meth:`chatservice.state.ChatState.deliver`: each delivery rule and its report.

The users are online through :class:`~tests.test_state.RecordingClient`; each
test calls ``deliver`` directly with one rule and checks who got the event
and what the report counts (over a local store, the report's Deferred has
fired when ``deliver`` returns).
"""

from __future__ import annotations

from chatservice import events
from chatservice.delivery import EVERYONE, NOTHING, Audience, Delivery, DeliveryReport
from chatservice.session import Session
from chatservice.state import ChatState
from tests.test_state import START, StateTestCase


class DeliveryTestCase(StateTestCase):
    """yoda, hans, luke and leia online; ``got`` says who received what."""

    def setUp(self) -> None:
        super().setUp()
        self.yoda, self.hans, self.luke, self.leia = self.online("yoda", "hans", "luke", "leia")

    def got(self) -> dict[str, list[events.Event]]:
        """Who received which events since the last call (users who got nothing left out)."""
        received = {}
        for name, client in self.clients.items():
            if client.delivered:
                received[name], client.delivered = client.delivered, []
        return received

    def deliver(
        self, event: events.Event, sender: str, audience: Audience, rule: Delivery
    ) -> DeliveryReport:
        """``state.deliver``, whose Deferred has fired (a local store)."""
        return self.successResultOf(self.state.deliver(event, sender, audience, rule))


class PresenceTests(DeliveryTestCase):
    """PRESENCE: every other online user but those the subject blocked; nothing while hidden."""

    def test_everyone_but_the_subject_and_whom_it_blocked(self) -> None:
        self.successResultOf(self.yoda.block("hans"))
        event = events.Presence("yoda", True)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.PRESENCE)
        self.assertEqual(report, DeliveryReport(delivered=2, skipped=1))
        self.assertEqual(self.got(), {"luke": [event], "leia": [event]})

    def test_blocking_the_subject_does_not_stop_it(self) -> None:
        self.successResultOf(self.hans.block("yoda"))
        event = events.Presence("yoda", True)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.PRESENCE)
        self.assertEqual(report, DeliveryReport(delivered=3))
        self.assertEqual(set(self.got()), {"hans", "luke", "leia"})

    def test_busy_users_are_told(self) -> None:
        self.hans.busy(None)
        event = events.Presence("yoda", False)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.PRESENCE)
        self.assertEqual(report.delivered, 3)
        self.assertEqual(self.got()["hans"], [event])

    def test_hidden_subject_is_not_announced(self) -> None:
        self.yoda.hide()
        report = self.deliver(
            events.Presence("yoda", False), "yoda", EVERYONE, Delivery.PRESENCE
        )
        self.assertIs(report, NOTHING)
        self.assertEqual(self.got(), {})

    def test_hidden_logout_is_not_announced(self) -> None:
        self.yoda.hide()
        self.yoda.end()
        self.assertEqual(self.got(), {})
        self.assertNotIn("yoda", self.state.sessions)


class MessageTests(DeliveryTestCase):
    """MESSAGE: blockers of the sender skipped and counted; busy users miss it."""

    def test_others_get_it(self) -> None:
        event = events.BroadcastMessage("yoda", "hi", START, 1)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.MESSAGE)
        self.assertEqual(report, DeliveryReport(delivered=3))
        self.assertEqual(self.got(), {"hans": [event], "luke": [event], "leia": [event]})

    def test_blockers_of_the_sender_are_skipped_and_counted(self) -> None:
        self.successResultOf(self.hans.block("yoda"))
        self.successResultOf(self.luke.block("yoda"))
        self.successResultOf(self.yoda.block("leia"))  # the sender's own blocks do not matter
        event = events.BroadcastMessage("yoda", "hi", START, 1)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.MESSAGE)
        self.assertEqual(report, DeliveryReport(delivered=1, skipped=2))
        self.assertEqual(self.got(), {"leia": [event]})

    def test_busy_users_miss_it_and_auto_reply_once(self) -> None:
        self.hans.busy("later")
        self.luke.busy("away")
        event = events.BroadcastMessage("yoda", "hi", START, 1)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.MESSAGE)
        self.assertEqual(
            report,
            DeliveryReport(
                delivered=1, busy=2, auto_replies=(("hans", "later"), ("luke", "away"))
            ),
        )
        self.assertEqual(self.got(), {"leia": [event]})
        again = self.deliver(event, "yoda", EVERYONE, Delivery.MESSAGE)
        self.assertEqual(again, DeliveryReport(delivered=1, busy=2))
        other_sender = self.deliver(event, "leia", EVERYONE, Delivery.MESSAGE)
        self.assertEqual(other_sender.auto_replies, (("hans", "later"), ("luke", "away")))
        self.assertEqual(self.successResultOf(self.hans.idle()).missed, 3)

    def test_named_audience_online_members_only(self) -> None:
        self.successResultOf(self.yoda.block("luke"))
        self.successResultOf(self.luke.block("hans"))
        event = events.RoomMessage(1, "hans", "hi", START, 1)
        report = self.deliver(
            event, "hans", ("hans", "luke", "leia", "obiwan"), Delivery.MESSAGE
        )
        self.assertEqual(report, DeliveryReport(delivered=1, skipped=1))
        self.assertEqual(self.got(), {"leia": [event]})


class TypingTests(DeliveryTestCase):
    """TYPING: not across a block either way; busy users get it."""

    def test_blocks_either_way_and_busy(self) -> None:
        self.successResultOf(self.hans.block("yoda"))
        self.successResultOf(self.yoda.block("luke"))
        self.leia.busy(None)
        event = events.TypingNotice("yoda", True)
        report = self.deliver(event, "yoda", EVERYONE, Delivery.TYPING)
        self.assertEqual(report, DeliveryReport(delivered=1, skipped=2))
        self.assertEqual(self.got(), {"leia": [event]})

    def test_to_one_user(self) -> None:
        event = events.TypingNotice("yoda", False)
        report = self.deliver(event, "yoda", ("luke",), Delivery.TYPING)
        self.assertEqual(report, DeliveryReport(delivered=1))
        self.assertEqual(self.got(), {"luke": [event]})


class PlainTests(DeliveryTestCase):
    """PLAIN: each named online user, blocks and busy aside; never the sender."""

    def test_named_online_users(self) -> None:
        self.successResultOf(self.hans.block("yoda"))
        self.luke.busy(None)
        event = events.RoomLeft(1, "yoda")
        report = self.deliver(
            event, "yoda", ["yoda", "hans", "luke", "obiwan"], Delivery.PLAIN
        )
        self.assertEqual(report, DeliveryReport(delivered=2))
        self.assertEqual(self.got(), {"hans": [event], "luke": [event]})


class DirectTests(DeliveryTestCase):
    """DIRECT: delivered, kept (offline, busy, not reading), or refused (blocked, mailbox full)."""

    def direct(self, to: str, text: str = "hi") -> DeliveryReport:
        event = events.DirectMessage("yoda", text, START)
        return self.deliver(event, "yoda", (to,), Delivery.DIRECT)

    def kept_for(self, username: str) -> list[tuple[str, str]]:
        return [(m.sender, m.text) for m in self.store.offline_messages(username)]

    def test_online(self) -> None:
        self.assertEqual(self.direct("hans"), DeliveryReport(delivered=1))
        self.assertEqual(list(self.got()), ["hans"])
        self.assertEqual(self.kept_for("hans"), [])

    def test_offline_is_kept(self) -> None:
        self.assertEqual(self.direct("obiwan"), DeliveryReport(stored=1))
        self.assertEqual(self.got(), {})
        self.assertEqual(self.kept_for("obiwan"), [("yoda", "hi")])

    def test_busy_is_kept_with_one_auto_reply(self) -> None:
        self.hans.busy("later")
        self.assertEqual(
            self.direct("hans"),
            DeliveryReport(stored=1, busy=1, auto_replies=(("hans", "later"),)),
        )
        self.assertEqual(self.direct("hans", "again"), DeliveryReport(stored=1, busy=1))
        self.assertEqual(self.got(), {})
        self.assertEqual(self.kept_for("hans"), [("yoda", "hi"), ("yoda", "again")])

    def test_congested_client_is_kept(self) -> None:
        self.clients["hans"].congested = True
        self.assertEqual(self.direct("hans"), DeliveryReport(stored=1))
        self.assertEqual(self.got(), {})
        self.assertEqual(self.kept_for("hans"), [("yoda", "hi")])

    def test_blocked_is_refused_and_not_kept(self) -> None:
        self.successResultOf(self.state.block("obiwan", "yoda"))
        self.assertEqual(self.direct("obiwan"), DeliveryReport(refused="blocked"))
        self.assertEqual(self.kept_for("obiwan"), [])
        self.successResultOf(self.hans.block("yoda"))
        self.assertEqual(self.direct("hans"), DeliveryReport(refused="blocked"))
        self.assertEqual(self.got(), {})

    def test_mailbox_full_is_refused(self) -> None:
        self.state.max_offline = 2
        self.direct("obiwan", "one")
        self.direct("obiwan", "two")
        self.assertEqual(self.direct("obiwan", "three"), DeliveryReport(refused="mailbox_full"))
        self.assertEqual(self.kept_for("obiwan"), [("yoda", "one"), ("yoda", "two")])

    def test_one_sender_has_a_quarter_of_the_mailbox(self) -> None:
        """Issue 15 item 8: one sender filled the mailbox and everyone else got ``mailbox_full``."""
        self.assertEqual((self.state.max_offline, self.state.max_offline_per_sender), (100, 25))
        for n in range(25):
            self.assertEqual(self.direct("obiwan", f"m{n}"), DeliveryReport(stored=1))
        self.assertEqual(self.direct("obiwan", "more"), DeliveryReport(refused="mailbox_share_full"))
        self.assertEqual(len(self.kept_for("obiwan")), 25)
        # Others still reach obiwan, and yoda still reaches others.
        event = events.DirectMessage("hans", "from hans", START)
        self.assertEqual(
            self.deliver(event, "hans", ("obiwan",), Delivery.DIRECT), DeliveryReport(stored=1)
        )
        self.hans.busy(None)
        self.assertEqual(self.direct("hans").stored, 1)
        # Once obiwan has read them, yoda has its share again.
        self.store.remove_offline([m.message_id for m in self.store.offline_messages("obiwan")])
        self.assertEqual(self.direct("obiwan", "again"), DeliveryReport(stored=1))

    def test_the_whole_mailbox_still_fills(self) -> None:
        self.state.max_offline = 3
        for sender in ("hans", "luke", "leia"):
            self.store.add_offline(sender, "obiwan", "x", START)
        self.assertEqual(self.direct("obiwan"), DeliveryReport(refused="mailbox_full"))

    def test_share_is_at_least_one(self) -> None:
        for total, share in ((1, 1), (3, 1), (4, 1), (7, 1), (8, 2), (100, 25), (101, 25)):
            state = ChatState(
                self.state.store, self.accounts, self.clock, None, total, session_factory=Session
            )
            self.assertEqual(state.max_offline_per_sender, share, total)

    def test_exactly_one_recipient(self) -> None:
        event = events.DirectMessage("yoda", "hi", START)
        for audience in (EVERYONE, (), ("hans", "luke")):
            self.assertRaises(
                ValueError, self.state.deliver, event, "yoda", audience, Delivery.DIRECT
            )
        self.assertEqual(self.got(), {})
