"""The admin socket: :class:`AdminProtocol` (JSON lines) and :class:`AdminSocket` (the UNIX socket file)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.internet import reactor, threads
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatservice.admin.actions import AdminActions
from chatservice.admin.socket import MAX_REQUEST_BYTES, AdminProtocol, AdminSocket
from chatservice.auth.directory import StoredAccounts
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore


def actions_on(store: MemoryStore) -> AdminActions:
    return AdminActions(StoredAccounts(LocalStore(store), Clock()), Clock())


class AdminProtocolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.store.add_account("yoda", "wise", None)
        self.ready = True
        self.protocol = AdminProtocol(actions_on(self.store), lambda: self.ready)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, line: bytes) -> list[dict[str, Any]]:
        self.transport.clear()
        self.protocol.dataReceived(line + b"\n")
        return [json.loads(reply) for reply in self.transport.value().splitlines()]

    def test_replies_in_order_with_ids(self) -> None:
        replies = self.send(
            b'{"action": "list", "id": 1}\n{"action": "remove", "username": "yoda", "id": "two"}\n'
            b'{"action": "list"}'
        )
        self.assertEqual(replies, [
            {"id": 1, "ok": True, "result": [{"user": "yoda", "operator": False, "last_seen": None, "last_seen_iso": None}]},
            {"id": "two", "ok": True, "result": {"user": "yoda", "action": "removed"}},
            {"ok": True, "result": []},
        ])

    def test_refusals(self) -> None:
        self.assertEqual(self.send(b'{"action": "export", "username": "nobody", "id": 3}'), [
            {"id": 3, "ok": False, "code": "unknown_user", "error": "Nothing is kept about nobody."}
        ])
        self.assertEqual(self.send(b"not json"), [
            {"ok": False, "code": "invalid_request", "error": "not a JSON line"}
        ])
        self.assertEqual(self.send(b"[1]"), [
            {"ok": False, "code": "invalid_request", "error": "not a JSON object"}
        ])
        self.assertEqual(self.send(b'{"action": 5}'), [
            {"ok": False, "code": "invalid_request", "error": "no such action: 5"}
        ])
        self.assertFalse(self.transport.disconnecting)

    def test_starting(self) -> None:
        self.ready = False
        self.assertEqual(self.send(b'{"action": "list", "id": 9}'), [
            {"id": 9, "ok": False, "code": "starting",
             "error": "the server is starting or stopping; try again"}
        ])

    def test_too_long(self) -> None:
        self.assertEqual(self.send(b"x" * (MAX_REQUEST_BYTES + 1)), [
            {"ok": False, "code": "invalid_request", "error": "request too long"}
        ])
        self.assertTrue(self.transport.disconnecting)

    def test_a_failing_store_is_logged_and_answered(self) -> None:
        with mock.patch.object(self.store, "usernames", side_effect=RuntimeError("disk on fire")):
            replies = self.send(b'{"action": "list"}')
        self.assertEqual(replies, [
            {"ok": False, "code": "internal", "error": "the action failed: disk on fire"}
        ])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class AdminSocketTests(unittest.TestCase):
    """The socket file: made 0600 at start (a stale one replaced), removed at stop; a real client."""

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="chat-admin-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = self.directory / "admin.sock"

    async def test_listens_0600_and_goes_at_stop(self) -> None:
        # A socket left by a killed server.
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(self.path))
        stale.close()
        store = MemoryStore()
        store.add_account("yoda", "wise", None)
        service = AdminSocket(self.path, actions_on(store), lambda: True, reactor)
        service.startService()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertTrue(stat.S_ISSOCK(os.stat(self.path).st_mode))

        def ask() -> dict[str, Any]:
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(5)
                client.connect(str(self.path))
                client.sendall(b'{"action": "list"}\n')
                return json.loads(client.makefile("rb").readline())

        reply = await threads.deferToThread(ask)
        self.assertEqual(reply["result"][0]["user"], "yoda")
        await service.stopService()
        self.assertFalse(self.path.exists())
