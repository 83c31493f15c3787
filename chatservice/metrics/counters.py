"""The counters and histograms of one server: :class:`ChatMetrics`.

One :class:`ChatMetrics` per server, with its own
``prometheus_client.CollectorRegistry`` (never the process-wide one, so that a
test may build several servers in one process).  The parts of the server that
see something happen count it here: the login gate (logins, lock-outs), the
session (commands), the chat state (messages, deliveries, mailbox sizes), the
connections (slow readers).

Counting is kept off the per-recipient path of a fan-out: a fan-out adds its
report's figures once (:meth:`ChatMetrics.delivery`), and the label children
the hot paths use are looked up once, here, not at every call.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

from chatservice.delivery import Delivery, DeliveryReport

LOGIN_OK = "ok"
"""The ``outcome`` of a successful login (every other outcome is a reason it failed)."""

MESSAGE_KINDS = ("broadcast", "room", "direct")
"""The ``kind`` label of ``chat_messages_total``."""

DELIVERY_OUTCOMES = ("delivered", "skipped", "busy", "stored", "refused", "unreached")
"""The ``outcome`` label of ``chat_deliveries_total``, in :class:`DeliveryReport`'s terms."""

STORE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Seconds: a local store answers in well under a millisecond, PostgreSQL in a few."""
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds the reactor was late."""
MAILBOX_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
"""Messages waiting in a mailbox."""

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def reason(error: BaseException) -> str:
    """The ``outcome`` label of a failed login: its error's class in snake case (``wrong_password``)."""
    return _CAMEL.sub("_", type(error).__name__).lower()


class ChatMetrics:
    """Every counter and histogram of one server, in :attr:`registry`.

    :param registry: where they are registered (default: a new one).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        """The registry ``/metrics`` exposes (the live gauges are added to it too)."""
        r = self.registry
        ProcessCollector(registry=r)  # CPU, memory, open files of the process
        self.logins = Counter(
            "chat_logins", "Login attempts by outcome: ok, or why it failed.", ["outcome"], registry=r
        )
        self.commands = Counter(
            "chat_commands", "Commands of logged-in users, by command.", ["command"], registry=r
        )
        self.messages = Counter(
            "chat_messages",
            "Messages sent, by kind (broadcast, room, direct).",
            ["kind"],
            registry=r,
        )
        self.deliveries = Counter(
            "chat_deliveries",
            "Events handed to this node's connections (delivered) or not (skipped: blocked;"
            " busy; stored: a direct message kept; refused; unreached: on a node the"
            " cluster link could not reach), by delivery rule.",
            ["rule", "outcome"],
            registry=r,
        )
        self.slow_reader_drops = Counter(
            "chat_slow_reader_drops",
            "Optional events (broadcasts, notices) not sent to clients past the output soft limit.",
            registry=r,
        )
        self.slow_reader_disconnects = Counter(
            "chat_slow_reader_disconnects",
            "Clients closed for not reading their output (hard limit or grace period).",
            registry=r,
        )
        self.mailbox_sizes = Histogram(
            "chat_offline_mailbox_size",
            "Messages waiting in a user's offline mailbox once a direct message is kept there.",
            buckets=MAILBOX_BUCKETS,
            registry=r,
        )
        self.store_calls = Histogram(
            "chat_store_call_seconds",
            "Time from a store call to its answer, by call.",
            ["call"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.reactor_lag = Histogram(
            "chat_reactor_lag_seconds",
            "How late the reactor ran a timer due at a known time.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        # The label children of the hot paths, looked up once.
        self._login_ok = self.logins.labels(LOGIN_OK)
        self._messages = {kind: self.messages.labels(kind) for kind in MESSAGE_KINDS}
        self._deliveries = {
            rule: tuple(self.deliveries.labels(rule.value, outcome) for outcome in DELIVERY_OUTCOMES)
            for rule in Delivery
        }
        self._commands: dict[str, Counter] = {}

    # Logins -------------------------------------------------------------------------

    def login_succeeded(self) -> None:
        self._login_ok.inc()

    def login_failed(self, error: BaseException) -> None:
        """Count a refused login."""
        self.logins.labels(reason(error)).inc()

    # Commands and messages ----------------------------------------------------------

    def command(self, name: str) -> None:
        """Count one command (``name`` from the command table)."""
        counter = self._commands.get(name)
        if counter is None:
            counter = self._commands[name] = self.commands.labels(name)
        counter.inc()

    def message(self, kind: str) -> None:
        """Count one message of ``kind`` (one of :data:`MESSAGE_KINDS`)."""
        self._messages[kind].inc()

    def delivery(self, rule: Delivery, report: DeliveryReport) -> None:
        """Count what one delivery (a whole fan-out) did on this node's connections."""
        delivered, skipped, busy, stored, refused, _unreached = self._deliveries[rule]
        if report.delivered:
            delivered.inc(report.delivered)
        if report.skipped:
            skipped.inc(report.skipped)
        if report.busy:
            busy.inc(report.busy)
        if report.stored:
            stored.inc(report.stored)
        if report.refused is not None:
            refused.inc()

    def unreached(self, rule: Delivery, count: int) -> None:
        """``count`` recipients on other nodes were not reached (the cluster link is down)."""
        self._deliveries[rule][5].inc(count)

    def mailbox(self, waiting: int) -> None:
        """A direct message was kept: ``waiting`` messages are in that mailbox now."""
        self.mailbox_sizes.observe(waiting)

    # Slow readers ---------------------------------------------------------------------

    def dropped(self) -> None:
        """An optional event was not sent to a client past its soft limit."""
        self.slow_reader_drops.inc()

    def abandoned(self) -> None:
        """A client was closed for not reading."""
        self.slow_reader_disconnects.inc()
