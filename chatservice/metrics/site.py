"""The ``--metrics`` web site: ``/metrics``, ``/healthz`` and ``/readyz``.

- ``/metrics``: the server's registry in Prometheus text format (or
  OpenMetrics, if the scraper asks for it), encoded by ``prometheus_client``
  (``choose_encoder``, ``generate_latest``).  It is rendered in the reactor
  thread, not in a thread pool as ``prometheus_client.twisted.MetricsResource``
  would: the live gauges read the connections and sessions, which only the
  reactor thread may touch, and a scrape is a few milliseconds of work.
- ``/healthz``: ``200 ok`` while the process answers (the reactor runs).
- ``/readyz``: ``200`` when every check of
  :class:`~chatservice.metrics.health.Readiness` passes, else ``503``; the body
  names each check and its result, one a line.

The site is meant for a private interface (``tcp:9119:interface=127.0.0.1``):
it has no authentication, like the exporters it imitates.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web import resource, server
from twisted.web.server import Request, Site

from chatservice.metrics.health import Check, Readiness

TEXT = b"text/plain; charset=utf-8"


class MetricsPage(resource.Resource):
    """``/metrics``: ``registry`` as the scraper asked for it."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        encoder, content_type = choose_encoder(request.getHeader("accept") or "")
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return encoder(self.registry)


class HealthPage(resource.Resource):
    """``/healthz``: the process answers."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", TEXT)
        return b"ok\n"


class ReadyPage(resource.Resource):
    """``/readyz``: whether every readiness check passes (``200``) or not (``503``)."""

    isLeaf = True

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: Request) -> int:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(checks: list[Check]) -> None:
            if gone:
                return
            ready = all(ok for _name, ok, _detail in checks)
            request.setResponseCode(200 if ready else 503)
            request.setHeader(b"Content-Type", TEXT)
            lines = ["ready" if ready else "not ready"]
            lines += [f"{name}: {'ok' if ok else 'FAIL'} ({detail})" for name, ok, detail in checks]
            request.write(("\n".join(lines) + "\n").encode("utf-8"))
            request.finish()

        self.readiness.check().addCallback(answer)
        return server.NOT_DONE_YET


class QuietSite(Site):
    """A site that keeps no access log: a scraper or a probe every few seconds would fill it."""

    def log(self, request: Request) -> None:
        pass


def metrics_site(registry: CollectorRegistry, readiness: Readiness) -> Site:
    """The site of ``--metrics`` listeners."""
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthPage())
    root.putChild(b"readyz", ReadyPage(readiness))
    site = QuietSite(root)
    site.displayTracebacks = False
    return site
