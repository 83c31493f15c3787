"""Tests for :mod:`chatservice.store.local`: :class:`LocalStore` (a local store behind the
asynchronous interface) and :func:`after`."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chatservice.commands import CommandError
from chatservice.store.interface import IChatStore, StoredMessage
from chatservice.store.local import LocalStore
from chatservice.store.memory import MemoryStore

T = 1_700_000_000.0


class LocalStoreTests(unittest.TestCase):
    """Each call runs on the local store at once and answers with a fired Deferred."""

    def setUp(self) -> None:
        self.memory = MemoryStore()
        self.store = LocalStore(self.memory)

    def test_provides_the_asynchronous_interface(self) -> None:
        self.assertTrue(verifyObject(IChatStore, self.store))
        self.assertIs(self.store.local, self.memory)

    def test_every_method_is_documented(self) -> None:
        for name in IChatStore.names():
            method = getattr(self.store, name)
            self.assertEqual(method.__name__, name)
            self.assertEqual(method.__doc__, IChatStore[name].__doc__)

    def test_results_fire_at_once(self) -> None:
        self.assertIsNone(self.successResultOf(self.store.open()))
        message = self.successResultOf(self.store.add_offline("yoda", "hans", "hi", T))
        self.assertEqual(message, StoredMessage(1, "yoda", "hans", "hi", T))
        self.assertEqual(self.successResultOf(self.store.count_offline("hans")), 1)
        self.assertEqual(self.successResultOf(self.store.offline_messages("hans")), [message])
        # The change is in the local store when the call returns.
        self.assertEqual(self.memory.offline_messages("hans"), [message])
        self.assertIsNone(self.successResultOf(self.store.remove_offline([1])))
        self.assertEqual(self.memory.count_offline("hans"), 0)
        entry = self.successResultOf(self.store.add_history("broadcast", "yoda", "all", T))
        self.assertEqual(entry.seq, 1)
        self.assertIsNone(self.successResultOf(self.store.close()))

    def test_exceptions_become_failed_deferreds(self) -> None:
        def broken(blocker: str, blocked: str) -> None:
            raise OSError(f"disk full while blocking {blocked}")

        self.patch(self.memory, "add_block", broken)
        failure = self.failureResultOf(self.store.add_block("yoda", "hans"), OSError)
        self.assertEqual(str(failure.value), "disk full while blocking hans")

    def test_methods_are_looked_up_at_each_call(self) -> None:
        """A method of the local store replaced after wrapping is the one called."""
        calls: list[str] = []
        self.patch(self.memory, "highest_room_id", lambda: calls.append("patched") or 41)
        self.assertEqual(self.successResultOf(self.store.highest_room_id()), 41)
        self.assertEqual(calls, ["patched"])

    def test_repr_names_the_local_store(self) -> None:
        self.assertEqual(repr(self.store), f"<LocalStore {self.memory!r}>")
