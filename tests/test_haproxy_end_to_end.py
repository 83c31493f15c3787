"""Three cluster nodes behind a real HAProxy, run with the shipped ``contrib/haproxy/chatservice.cfg``.

Redis (``tests/redis_support.py``), a PostgreSQL database
(``tests/pg_support.py``), three ``twistd chat`` nodes listening with
``--listen haproxy:tcp:...`` and one ``haproxy`` in front of them, all on
127.0.0.1.  Users connect to HAProxy only, from different loopback
addresses: they are spread over the nodes, see each other, and every node
sees each user's own address (the PROXY header).  When a node is killed,
HAProxy sends its users' new connections to the others and they log in
again once the dead node's lease has run out.

HAProxy is looked for in ``$PATH`` and ``/usr/sbin``; when it is missing
these tests fail (``.ci/run`` installs the Debian package ``haproxy``), or
are skipped with ``CHAT_ALLOW_SKIP_HAPROXY=1`` outside CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.e2e_support import ChatServer, LineClient, loopback_source, stop_process
from tests.pg_support import new_database
from tests.redis_support import RedisServer, free_port
from tests.test_cluster_end_to_end import LEASE_BOUND, wait_for

CONFIG = Path(__file__).resolve().parent.parent / "contrib" / "haproxy" / "chatservice.cfg"
ACCOUNTS = {name: f"pw-{name}" for name in ("ann", "bob", "cat", "dan")}
SOURCES = {"ann": "127.0.0.2", "bob": "127.0.0.3", "cat": "127.0.0.4", "dan": "127.0.0.5"}


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    if found is None:
        reason = "haproxy is not installed: install the Debian package haproxy (.ci/run does)"
        if os.environ.get("CHAT_ALLOW_SKIP_HAPROXY") == "1" and not os.environ.get("CI"):
            raise unittest.SkipTest(reason)
        raise RuntimeError(reason + ", or set CHAT_ALLOW_SKIP_HAPROXY=1 to skip these tests")
    return found


def hgetall(port: int, key: str) -> dict[str, str]:
    """``HGETALL key`` on the Redis at ``port`` (RESP over a socket; values without CR/LF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"*2\r\n$7\r\nHGETALL\r\n${len(key)}\r\n{key}\r\n".encode())
        data = b""
        while True:
            data += sock.recv(65536)
            lines = data.split(b"\r\n")
            if lines[0].startswith(b"*") and len(lines) > 2 * int(lines[0][1:]) + 1:
                count = int(lines[0][1:])
                values = [lines[2 + 2 * i].decode() for i in range(count)]
                return dict(zip(values[::2], values[1::2]))


class HAProxyClusterTests(unittest.TestCase):
    def setUp(self) -> None:
        binary = haproxy_binary()
        for source in SOURCES.values():
            if not loopback_source(source):
                raise unittest.SkipTest(f"cannot connect from {source}")
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        dsn = new_database(self)
        self.nodes: dict[str, ChatServer] = {}
        for name in ("a", "b", "c"):
            node = ChatServer(
                ACCOUNTS, timeout=120, proxied=True,
                options=["--store", dsn, "--redis", self.redis.url, "--node-name", name],
            )
            self.addCleanup(node.stop)
            self.nodes[name] = node.start()
        self.port = free_port()
        directory = Path(tempfile.mkdtemp(prefix="chat-haproxy-"))
        self.addCleanup(shutil.rmtree, directory, True)
        environment = dict(
            os.environ,
            CHAT_FRONTEND=f"127.0.0.1:{self.port}",
            **{f"CHAT_NODE_{name.upper()}": f"127.0.0.1:{node.port}" for name, node in self.nodes.items()},
        )
        self.haproxy_log = directory / "haproxy.log"
        with open(self.haproxy_log, "wb") as log:
            self.haproxy = subprocess.Popen(
                [binary, "-db", "-f", str(CONFIG)], env=environment, cwd=directory,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.addCleanup(stop_process, self.haproxy)
        self.clients: list[LineClient] = []
        self.addCleanup(self._close_clients)
        wait_for(self._greets, 20, "HAProxy to pass connections to a node")

    def _greets(self) -> bool:
        if self.haproxy.poll() is not None:
            raise AssertionError(f"haproxy exited:\n{self.haproxy_log.read_text(errors='replace')}")
        try:
            client = LineClient(self.port, timeout=3)
        except OSError:
            return False
        try:
            return "Username:" in client.read_until("Username:", timeout=3)
        except (AssertionError, OSError, TimeoutError):
            return False
        finally:
            client.close()

    def _close_clients(self) -> None:
        for client in self.clients:
            client.close()

    def user(self, name: str) -> LineClient:
        client = LineClient(self.port, timeout=10, source=SOURCES[name])
        self.clients.append(client)
        client.login(name, ACCOUNTS[name])
        return client

    def placement(self) -> dict[str, str]:
        """User -> node, from the cluster's registry of who is online where."""
        return {user: json.loads(entry)["n"] for user, entry in hgetall(self.redis.port, "chat:online").items()}

    def test_users_behind_haproxy_are_spread_over_the_nodes_with_their_own_addresses(self) -> None:
        ann = self.user("ann")
        bob = self.user("bob")
        cat = self.user("cat")
        placed = self.placement()
        self.assertEqual(sorted(placed), ["ann", "bob", "cat"])
        self.assertEqual(len(set(placed.values())), 3, f"leastconn spreads three users: {placed}")
        # Every node sees each user's own address, whichever node they are on.
        cat.send("active")
        rows = cat.sync()
        for name in ("ann", "bob"):
            self.assertTrue(any(row.startswith(f"{name}, {SOURCES[name]}, ") for row in rows), rows)
        ann.send("message bob through the balancer")
        self.assertTrue(bob.read_until("ann: through the balancer", timeout=10))
        for name, node in self.nodes.items():
            self.assertNotIn("Traceback", node.log(), f"node {name}")

    def test_a_dead_node_s_users_come_back_through_haproxy_on_another_node(self) -> None:
        self.user("ann")
        self.user("bob")
        self.user("cat")
        dead = self.placement()["ann"]
        self.nodes[dead].process.send_signal(signal.SIGKILL)
        self.nodes[dead].process.wait(10)
        started = time.monotonic()

        attempts: list[str] = []

        def back() -> bool:
            client = LineClient(self.port, timeout=10, source=SOURCES["ann"])
            self.clients.append(client)
            try:
                client.read_until("Username:")
                client.send("ann")
                client.read_until("Password:")
                client.send(ACCOUNTS["ann"])
                line = client.read_line()
            except AssertionError as e:  # closed: sent to the dead node before HAProxy saw it
                attempts.append(str(e))
                client.close()
                return False
            attempts.append(line)
            if "already logged in" in line:
                client.close()
                return False
            return True

        try:
            wait_for(back, LEASE_BOUND + 10, "ann to log in again")
        except AssertionError as e:
            raise AssertionError(f"{e}; the attempts: {attempts[:3]} ... {attempts[-3:]}") from None
        self.assertTrue(attempts[-1].strip().startswith("Welcome"), attempts)
        self.assertLess(time.monotonic() - started, LEASE_BOUND + 10)
        self.assertNotEqual(self.placement()["ann"], dead)
