"""End to end: a real ``twistd chat --metrics`` scraped over HTTP, parsed with ``prometheus_client``'s parser.

Users log in (and one fails to), broadcast and send a direct message over
TCP; the scrape after shows the counters moved by exactly that, the live
gauges showing the connections, and the reactor lag and store latency
histograms filled.  ``/healthz`` and ``/readyz`` answer as a probe expects.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from tests.certs import make_certificates
from tests.e2e_support import HOST, ChatServer
from tests.pg_support import new_database
from tests.redis_support import RedisServer
from tests.ws_support import WebSocketClient

_METRICS_PORT = re.compile(r"QuietSite starting on (\d+)")


def get(url: str) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode("utf-8")


class MetricsTestCase(unittest.TestCase):
    """Starts :attr:`server` with ``--metrics`` (and :attr:`options`); scrapes it."""

    options: list[str] = []
    web = False

    def setUp(self) -> None:
        self.server = ChatServer(
            timeout=30, web=self.web, options=["--metrics", f"tcp:0:interface={HOST}", *self.options]
        ).start()
        self.addCleanup(self.server.stop)
        deadline = time.monotonic() + 10
        while (found := _METRICS_PORT.search(self.server.log())) is None:
            self.assertLess(time.monotonic(), deadline, self.server.log())
            time.sleep(0.02)
        self.base = f"http://{HOST}:{found.group(1)}"

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, content_type, body = get(f"{self.base}/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("text/plain; version="), content_type)
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }

    @staticmethod
    def value(samples: dict[Any, float], name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def wait_until_ready(self, ready: bool, timeout: float) -> str:
        """Poll ``/readyz`` until it says ``ready`` (or not); its last body."""
        deadline = time.monotonic() + timeout
        while True:
            status, _type, body = get(f"{self.base}/readyz")
            if (status == 200) == ready:
                return body
            self.assertLess(time.monotonic(), deadline, f"/readyz still {status}:\n{body}")
            time.sleep(0.2)


class MetricsEndToEndTests(MetricsTestCase):
    """One server with ``--metrics``, scraped before and after some chat."""

    def test_health_and_readiness(self) -> None:
        self.assertEqual(get(f"{self.base}/healthz")[::2], (200, "ok\n"))
        status, _type, body = get(f"{self.base}/readyz")
        self.assertEqual(status, 200, body)
        self.assertEqual(body, "ready\nstate: ok (loaded)\nstore: ok (answers)\n")
        self.assertEqual(get(f"{self.base}/nothing")[0], 404)

    def test_values_move(self) -> None:
        before = self.scrape()
        self.assertEqual(self.value(before, "chat_serving"), 1)
        self.assertEqual(self.value(before, "chat_logins_total", outcome="ok"), 0)
        yoda = self.server.connect()
        self.addCleanup(yoda.close)
        yoda.login("yoda", "wise")
        hans = self.server.connect()
        self.addCleanup(hans.close)
        hans.login("hans", "falcon")
        self.assertEqual(yoda.read_line(), "hans logged in")
        stranger = self.server.connect()
        self.addCleanup(stranger.close)
        stranger.greeted()
        stranger.send("luke")
        stranger.read_until("Password: ")
        stranger.send("not the password")
        stranger.read_until("Password: ")
        yoda.send("broadcast hello there")
        self.assertIn("hello there", hans.read_line())
        yoda.send("message hans psst")
        self.assertIn("psst", hans.read_line())
        yoda.sync()
        # The reactor lag is measured every second.
        deadline = time.monotonic() + 5
        while True:
            after = self.scrape()
            if self.value(after, "chat_reactor_lag_seconds_count") >= 1:
                break
            self.assertLess(time.monotonic(), deadline, "no reactor lag measured")
            time.sleep(0.2)

        def moved(name: str, **labels: str) -> float:
            return self.value(after, name, **labels) - self.value(before, name, **labels)

        self.assertEqual(moved("chat_logins_total", outcome="ok"), 2)
        self.assertEqual(moved("chat_logins_total", outcome="wrong_password"), 1)
        self.assertEqual(moved("chat_commands_total", command="broadcast"), 1)
        # Two: sync() is a message to a user that does not exist (refused: no message).
        self.assertEqual(moved("chat_commands_total", command="message"), 2)
        self.assertEqual(moved("chat_messages_total", kind="broadcast"), 1)
        self.assertEqual(moved("chat_messages_total", kind="direct"), 1)
        self.assertEqual(moved("chat_deliveries_total", rule="message", outcome="delivered"), 1)
        self.assertEqual(moved("chat_deliveries_total", rule="direct", outcome="delivered"), 1)
        self.assertEqual(moved("chat_deliveries_total", rule="presence", outcome="delivered"), 1)
        self.assertEqual(self.value(after, "chat_connections", transport="tcp", state="chat"), 2)
        self.assertEqual(self.value(after, "chat_connections", transport="tcp", state="login"), 1)
        self.assertEqual(self.value(after, "chat_users_online", node="this"), 2)
        self.assertEqual(moved("chat_store_call_seconds_count", call="add_history"), 1)
        self.assertGreater(self.value(after, "process_resident_memory_bytes"), 0)
        for name in ("chat_output_backlog_bytes", "chat_slow_reader_drops_total"):
            self.assertEqual(self.value(after, name), 0, name)


class ClusteredReadinessTests(MetricsTestCase):
    """A node on PostgreSQL and Redis: ``/readyz`` and ``chat_cluster_link_up`` follow Redis."""

    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.options = ["--store", new_database(self), "--redis", self.redis.url, "--node-name", "a"]
        super().setUp()

    def test_redis_down_then_back(self) -> None:
        body = self.wait_until_ready(True, 15)
        self.assertEqual(
            body, "ready\nstate: ok (loaded)\nstore: ok (answers)\nredis: ok (connected)\n"
        )
        self.assertEqual(self.value(self.scrape(), "chat_cluster_link_up"), 1)
        self.redis.stop()
        body = self.wait_until_ready(False, 15)
        self.assertIn("redis: FAIL (not connected)", body)
        self.assertIn("store: ok (answers)", body)
        self.assertEqual(self.value(self.scrape(), "chat_cluster_link_up"), 0)
        self.redis.start()  # the same port: the link reconnects
        self.wait_until_ready(True, 20)
        self.assertEqual(self.value(self.scrape(), "chat_cluster_link_up"), 1)
        self.assertEqual(self.value(self.scrape(), "chat_users_online", node="others"), 0)


class TransportTests(MetricsTestCase):
    """``chat_connections`` tells TCP, TLS and WebSocket connections apart."""

    web = True

    def setUp(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="chat-metrics-tls-"))
        self.addCleanup(shutil.rmtree, work, True)
        self.certs = make_certificates(work)
        self.options = [
            "--listen",
            f"ssl:0:interface={HOST}:privateKey={self.certs['key']}:certKey={self.certs['cert']}",
        ]
        super().setUp()

    def test_transports(self) -> None:
        tls_port = int(re.search(r"ChatFactory \(TLS\) starting on (\d+)", self.server.log()).group(1))
        context = ssl.create_default_context(cafile=str(self.certs["ca"]))
        secure = context.wrap_socket(
            socket.create_connection((HOST, tls_port), timeout=10), server_hostname="localhost"
        )
        self.addCleanup(secure.close)
        secure.sendall(b'{"type":"login","user":"yoda","password":"wise"}\n')
        received = b""
        while b'"success":true' not in received:
            chunk = secure.recv(4096)
            self.assertTrue(chunk, received)
            received += chunk
        browser = WebSocketClient(self.server.web_port)
        self.addCleanup(browser.close)
        browser.send_json({"type": "login", "user": "hans", "password": "falcon"})
        self.assertTrue(browser.read_json()["success"])
        waiting = self.server.connect()
        self.addCleanup(waiting.close)
        waiting.greeted()
        samples = self.scrape()
        self.assertEqual(self.value(samples, "chat_connections", transport="tls", state="chat"), 1)
        self.assertEqual(self.value(samples, "chat_connections", transport="websocket", state="chat"), 1)
        self.assertEqual(self.value(samples, "chat_connections", transport="tcp", state="login"), 1)
        self.assertEqual(self.value(samples, "chat_users_online", node="this"), 2)
