"""End to end: a JSON ``read`` whose ``since`` is out of SQLite's integer range.

Found by ``bench/soak.py`` (its garbage senders send ``{"type":"read",
"since":1e308}``).  With the SQLite store (the default), ``Session.read``
passes ``math.floor(since)`` to ``SQLiteStore.history_after``, and for
``|since| >= 2**63`` SQLite raises ``OverflowError: Python int too large to
convert to SQLite INTEGER``.  Nothing catches it: it escapes
``dataReceived``, Twisted logs an ``Unhandled Error`` with a traceback and
drops the connection, and the request never gets its reply.

Since the fix, the server answers such a request (an
``error`` with ``bad_argument``, or an empty ``history``) and keeps the
connection.  Real server (:class:`tests.e2e_support.ChatServer`), loopback,
a few seconds.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from tests.e2e_support import ChatServer

SINCE = (1e19, -1e19, 1e308, 2**63)
"""Values of ``since`` out of SQLite's 64-bit integer range once floored."""
ACCOUNTS = {f"reader{i}": f"pw-{i}" for i in range(len(SINCE))}


class ReadSinceOutOfRangeTests(unittest.TestCase):
    """``read`` with a huge ``since`` is answered, and the connection lives on."""

    timeout = 60

    def setUp(self) -> None:
        self.server = ChatServer(ACCOUNTS, timeout=60)
        self.server.start()
        self.addCleanup(self.server.stop)

    def ask(self, user: str, since: Any) -> tuple[dict[str, Any] | str, str]:
        """Log ``user`` in and send ``read`` with ``since``: the reply (or why
        there was none), and the type of the reply to a following ``whoelse``."""
        client = self.server.connect()
        self.addCleanup(client.close)
        client.login_json(user, ACCOUNTS[user])
        client.send_json({"type": "read", "since": since, "id": 1})
        try:
            reply: dict[str, Any] | str = client.read_json()
        except AssertionError as e:
            return f"no reply: {e}", ""
        client.send_json({"type": "whoelse", "id": 2})
        try:
            after = client.read_json()
        except AssertionError as e:
            return reply, f"no reply: {e}"
        return reply, str(after.get("type"))

    def test_huge_since_answered(self) -> None:
        for user, since in zip(ACCOUNTS, SINCE):
            reply, after = self.ask(user, since)
            self.assertIsInstance(reply, dict, f"since={since!r}: {reply}")
            assert isinstance(reply, dict)
            self.assertIn(reply.get("type"), ("error", "history"), reply)
            self.assertEqual(reply.get("id"), 1)
            self.assertEqual(after, "userlist", f"since={since!r}: the connection did not live on")
        self.assertNotIn("Traceback", self.server.log())

