"""The harness's protocol tests again, writing through the OutputBatcher.

On a real TCP connection every write goes through
:class:`chatservice.server.output.OutputBatcher` (see
``tests/test_output_batching.py`` for the batcher on real sockets).  The
Clock-driven tests elsewhere use StringTransport, which is written to at
once; here the same test classes run with ``batched=True`` (each
connection's output is flushed whenever the test reads it), so slow
readers, floods, turns, shutdown and every command are checked on the path
users' connections take.
"""

from __future__ import annotations

from tests import test_features, test_limits, test_protocol, test_server_wide

_CLASSES = [
    test_protocol.TextLoginTests,
    test_protocol.PresenceTests,
    test_protocol.TimeoutTests,
    test_protocol.CommandTests,
    test_protocol.BadInputTests,
    test_protocol.JsonTests,
    test_protocol.SlowLoginTests,
    test_protocol.PeerIntroductionTests,
    test_limits.FloodTests,
    test_limits.TurnTests,
    test_limits.SlowReaderTests,
    test_limits.SlowReaderGraceTests,
    test_limits.ConnectionCapTests,
    test_limits.LoginDeadlineTests,
    test_features.BusyTests,
    test_features.HideTests,
    test_features.SendTests,
    test_features.RoomTests,
    test_features.HistoryTests,
    test_server_wide.BannedConnectionTests,
    test_server_wide.ShutdownTests,
    test_server_wide.TypingTests,
]

for _cls in _CLASSES:
    _name = f"Batched{_cls.__name__}"
    globals()[_name] = type(
        _name,
        (_cls,),
        {
            "harness_options": {**_cls.harness_options, "batched": True},
            "__module__": __name__,
            "__doc__": f"{_cls.__doc__ or _cls.__name__} (batched output)",
        },
    )
del _cls, _name


class BatchedHarnessTests(test_protocol.HarnessTestCase):
    """The batched harness really batches (else the classes above prove nothing new)."""

    harness_options = {"batched": True}

    def test_output_waits_in_the_batcher_until_read(self) -> None:
        yoda, hans = self.online("yoda", "hans")
        yoda.send("broadcast waiting")
        yoda.send("message hans direct")
        self.assertEqual(hans.transport.value(), b"")
        self.assertEqual(yoda.transport.value(), b"")
        self.assertGreater(self.harness.factory.output_batcher.pending, 0)
        lines = hans.lines()
        self.assertIn("[broadcast] yoda: waiting", lines)
        self.assertIn("yoda: direct", lines)
        self.assertLess(lines.index("[broadcast] yoda: waiting"), lines.index("yoda: direct"))
