"""The counters and histograms of one server: :class:`ChatMetrics`.

One :class:`ChatMetrics` per server, in its own
``prometheus_client.CollectorRegistry`` (never the process-wide one, so that a
test may build several servers in one process).  The parts of the server that
see something happen count it here: the login gate (logins), the session
(commands), the chat state (messages, deliveries, mailbox sizes), the
connections (slow readers), the store wrapper (call latency), the reactor
lag timer.

The counting itself is plain integers in the reactor thread, which is the
only thread that counts or scrapes: ``prometheus_client``'s ``Counter`` and
``Histogram`` take a lock and check their arguments at every increment,
which on the broadcast path cost 2.5% more instructions per recipient
(``python3 -m bench.instructions``).  :class:`ChatMetrics` is a registry
collector: at each scrape it hands the figures to ``prometheus_client`` as
metric families (``CounterMetricFamily``, ``HistogramMetricFamily``), and
``prometheus_client`` writes the exposition.  A fan-out adds its report's
figures once (:meth:`ChatMetrics.delivery`), never once per recipient.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from chatservice.delivery import Delivery, DeliveryReport

LOGIN_OK = "ok"
"""The ``outcome`` of a successful login (every other outcome is a reason it failed)."""

MESSAGE_KINDS = ("broadcast", "room", "direct")
"""The ``kind`` label of ``chat_messages_total``."""

DELIVERY_OUTCOMES = ("delivered", "skipped", "busy", "stored", "refused", "unreached")
"""The ``outcome`` label of ``chat_deliveries_total``, in :class:`DeliveryReport`'s terms."""
_UNREACHED = DELIVERY_OUTCOMES.index("unreached")

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


class Buckets:
    """One histogram's counts: how many observations fell at or under each bound, and their sum.

    :param bounds: the upper bounds, increasing (``+Inf`` is added).
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations in each bucket (not cumulative); the last is above every bound."""
        self.total = 0.0
        """The sum of the observations."""

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations at or under it)`` of each bound, ``+Inf`` last, as Prometheus counts them."""
        buckets = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return buckets


class ChatMetrics(Collector):
    """Every counter and histogram of one server; registered in :attr:`registry`.

    :param registry: where to register (default: a new one).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        """The registry ``/metrics`` exposes (the live gauges are added to it too)."""
        self.logins: dict[str, int] = {LOGIN_OK: 0}
        """Login attempts by outcome: ``ok``, or the :func:`reason` it failed."""
        self.commands: dict[str, int] = {}
        """Commands by name."""
        self.messages = dict.fromkeys(MESSAGE_KINDS, 0)
        """Messages by kind."""
        self.deliveries = {rule: [0] * len(DELIVERY_OUTCOMES) for rule in Delivery}
        """Per rule, the figures of :data:`DELIVERY_OUTCOMES`, in that order."""
        self.slow_reader_drops = 0
        self.slow_reader_disconnects = 0
        self.mailbox_sizes = Buckets(MAILBOX_BUCKETS)
        self.store_calls: dict[str, Buckets] = {}
        """The latency of each store call, by its name (see :meth:`store_call`)."""
        self.reactor_lag = Buckets(LAG_BUCKETS)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)  # CPU, memory, open files of the process

    # Logins -------------------------------------------------------------------------

    def login_succeeded(self) -> None:
        self.logins[LOGIN_OK] += 1

    def login_failed(self, error: BaseException) -> None:
        """Count a refused login by why it was refused."""
        outcome = reason(error)
        self.logins[outcome] = self.logins.get(outcome, 0) + 1

    # Commands and messages ----------------------------------------------------------

    def command(self, name: str) -> None:
        """Count one command (``name`` from the command table)."""
        commands = self.commands
        commands[name] = commands.get(name, 0) + 1

    def message(self, kind: str) -> None:
        """Count one message of ``kind`` (one of :data:`MESSAGE_KINDS`)."""
        self.messages[kind] += 1

    def delivery(self, rule: Delivery, report: DeliveryReport) -> None:
        """Count what one delivery (a whole fan-out) did on this node's connections."""
        counts = self.deliveries[rule]
        counts[0] += report.delivered
        if report.skipped:
            counts[1] += report.skipped
        if report.busy:
            counts[2] += report.busy
        if report.stored:
            counts[3] += report.stored
        if report.refused is not None:
            counts[4] += 1

    def unreached(self, rule: Delivery, count: int) -> None:
        """``count`` recipients on other nodes were not reached (the cluster link, or their node's, was down)."""
        self.deliveries[rule][_UNREACHED] += count

    def mailbox(self, waiting: int) -> None:
        """A direct message was kept: ``waiting`` messages are in that mailbox now."""
        self.mailbox_sizes.observe(waiting)

    # Slow readers ---------------------------------------------------------------------

    def dropped(self) -> None:
        """An optional event was not sent to a client past its soft limit."""
        self.slow_reader_drops += 1

    def abandoned(self) -> None:
        """A client was closed for not reading."""
        self.slow_reader_disconnects += 1

    # The store --------------------------------------------------------------------------

    def store_call(self, name: str) -> Buckets:
        """The latency histogram of the store call ``name`` (made when first asked for)."""
        buckets = self.store_calls.get(name)
        if buckets is None:
            buckets = self.store_calls[name] = Buckets(STORE_BUCKETS)
        return buckets

    # The scrape -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """Every figure, as ``prometheus_client`` metric families."""
        yield _counter(
            "chat_logins", "Login attempts by outcome: ok, or why it failed.",
            "outcome", self.logins,
        )
        yield _counter("chat_commands", "Commands of logged-in users, by command.", "command", self.commands)
        yield _counter("chat_messages", "Messages sent, by kind (broadcast, room, direct).", "kind", self.messages)
        deliveries = CounterMetricFamily(
            "chat_deliveries",
            "Events handed to this node's connections (delivered) or not (skipped: blocked;"
            " busy; stored: a direct message kept; refused; unreached: on another node"
            " that did not get it through Redis), by delivery rule.",
            labels=["rule", "outcome"],
        )
        for rule, counts in self.deliveries.items():
            for outcome, count in zip(DELIVERY_OUTCOMES, counts):
                deliveries.add_metric([rule.value, outcome], count)
        yield deliveries
        yield CounterMetricFamily(
            "chat_slow_reader_drops",
            "Optional events (broadcasts, notices) not sent to clients past the output soft limit.",
            value=self.slow_reader_drops,
        )
        yield CounterMetricFamily(
            "chat_slow_reader_disconnects",
            "Clients closed for not reading their output (hard limit or grace period).",
            value=self.slow_reader_disconnects,
        )
        yield _histogram(
            "chat_offline_mailbox_size",
            "Messages waiting in a user's offline mailbox once a direct message is kept there.",
            {(): self.mailbox_sizes},
        )
        yield _histogram(
            "chat_store_call_seconds", "Time from a store call to its answer, by call.",
            {(name,): buckets for name, buckets in sorted(self.store_calls.items())}, ["call"],
        )
        yield _histogram(
            "chat_reactor_lag_seconds", "How late the reactor ran a timer due at a known time.",
            {(): self.reactor_lag},
        )


def _counter(name: str, documentation: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _histogram(
    name: str, documentation: str, series: dict[tuple[str, ...], Buckets], labels: list[str] | None = None
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels or [])
    for values, buckets in series.items():
        family.add_metric(list(values), buckets.cumulative(), buckets.total)
    return family
