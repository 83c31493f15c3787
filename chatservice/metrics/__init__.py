"""What an operator watches: Prometheus metrics, health and readiness (``twistd chat --metrics``).

- :mod:`~chatservice.metrics.counters`: :class:`ChatMetrics`, the counters and
  histograms the server updates as it works, in one
  ``prometheus_client.CollectorRegistry`` per server (never the global one).
- :mod:`~chatservice.metrics.live`: the gauges read when scraped
  (connections, backlog, lock-outs, the cluster link), costing nothing meanwhile.
- :mod:`~chatservice.metrics.timedstore`: the store call latency.
- :mod:`~chatservice.metrics.lag`: the reactor lag, from a ``LoopingCall``
  measuring its own lateness.
- :mod:`~chatservice.metrics.site`: the ``--metrics`` web site: ``/metrics``,
  ``/healthz``, ``/readyz``.

See ``docs/operating.rst`` (*Monitoring*) for every metric and the alert
thresholds that make sense.
"""

from chatservice.metrics.counters import ChatMetrics

__all__ = ["ChatMetrics"]
