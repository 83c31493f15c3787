"""Peer-to-peer file transfer over a simulated datagram network on a fake clock.

Two :class:`FileTransfers` (yoda sends, hans receives) exchange datagrams
through :class:`DatagramNetwork`, perfect or made lossy by ``LossyWriter``
(loss, duplication, reordering), with ``task.Clock`` driving every timer.
Every test ends with no pending delayed call.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Callable

from twisted.internet.task import Clock
from twisted.trial import unittest

from chatservice.client import downloads, udpwire
from chatservice.client.filetransfer import (
    IncomingTransfer,
    OutgoingTransfer,
    State,
    TransferSettings,
)
from chatservice.client.lossy import LossyWriter
from chatservice.client.testing import DatagramNetwork, TransferRecorder, lossy
from chatservice.client.transfers import FileTransfers, TransferError

YODA = ("127.0.0.1", 5001)
HANS = ("127.0.0.1", 5002)
TOKEN = "0123456789abcdef0123456789abcdef"
SETTINGS = TransferSettings(chunk_size=1000, receive_window=64, idle_timeout=5.0, start_timeout=10.0, linger=2.0)


class TransferTestCase(unittest.TestCase):
    """yoda's and hans's transfers on one network and one clock."""

    settings = SETTINGS

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.network = DatagramNetwork(self.clock)
        temporary = tempfile.TemporaryDirectory(prefix="chat-client-test-")
        self.addCleanup(temporary.cleanup)
        self.root = Path(temporary.name)
        self.downloads = self.root / "downloads"
        self.downloads.mkdir()
        self.yoda_events = TransferRecorder()
        self.hans_events = TransferRecorder()
        self.yoda = FileTransfers(self.clock, self.root, self.yoda_events, self.settings)
        self.hans = FileTransfers(self.clock, self.downloads, self.hans_events, self.settings)
        self.lossy: list[LossyWriter] = []

    def tearDown(self) -> None:
        self.yoda.close_all("test over")
        self.hans.close_all("test over")
        for writer in self.lossy:
            writer.stop()
        self.network.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def connect(self, wrap_yoda=None, wrap_hans=None) -> None:
        self.network.attach(YODA, self.yoda, wrap_yoda)
        self.network.attach(HANS, self.hans, wrap_hans)

    def make_file(self, size: int, seed: int = 1, name: str = "lecture.bin") -> Path:
        path = self.root / name
        path.write_bytes(random.Random(seed).randbytes(size))
        return path

    def start(self, path: Path, size: int | None = None, announced: int | None = None):
        size = path.stat().st_size if size is None else size
        incoming = self.hans.expect("yoda", path.name, size if announced is None else announced, TOKEN)
        outgoing = self.yoda.send_file("hans", path, path.name, size, *HANS, TOKEN)
        return outgoing, incoming

    def run_until(self, done: Callable[[], bool], step: float = 0.001, limit: float = 600) -> None:
        deadline = self.clock.seconds() + limit
        while not done():
            if self.clock.seconds() > deadline:
                self.fail(f"not done after {limit} simulated seconds")
            self.clock.advance(step)

    def finish(self) -> None:
        """Run until both sides have ended and every timer (linger too) is over."""
        self.run_until(lambda: not self.yoda.active() and not self.hans.active())
        self.run_until(lambda: not self.clock.getDelayedCalls(), step=0.5)

    def assertReceived(self, path: Path) -> None:
        received = self.downloads / f"yoda_{path.name}"
        self.assertEqual(
            hashlib.sha256(received.read_bytes()).hexdigest(),
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        self.assertEqual(sorted(p.name for p in self.downloads.iterdir()), [received.name])

    def assertNothingSaved(self) -> None:
        self.assertEqual(list(self.downloads.iterdir()), [])


class PerfectNetworkTests(TransferTestCase):
    def test_file_arrives_whole(self) -> None:
        self.connect()
        path = self.make_file(300_000)
        outgoing, incoming = self.start(path)
        self.finish()
        self.assertReceived(path)
        self.assertEqual(self.yoda_events.succeeded, [outgoing])
        self.assertEqual(self.hans_events.succeeded, [incoming])
        self.assertEqual(outgoing.retransmissions, 0)
        self.assertEqual(incoming.duplicates, 0)
        self.assertEqual(incoming.path, self.downloads / "yoda_lecture.bin")

    def test_empty_file(self) -> None:
        self.connect()
        path = self.make_file(0)
        self.start(path)
        self.finish()
        self.assertReceived(path)

    def test_size_not_a_multiple_of_the_chunk(self) -> None:
        self.connect()
        path = self.make_file(10 * 1000 + 1)
        self.start(path)
        self.finish()
        self.assertReceived(path)

    def test_progress_is_reported_and_reaches_the_size(self) -> None:
        self.connect()
        path = self.make_file(50_000)
        outgoing, incoming = self.start(path)
        self.finish()
        sent = [done for transfer, done in self.yoda_events.progress if transfer is outgoing]
        got = [done for transfer, done in self.hans_events.progress if transfer is incoming]
        self.assertEqual(sent, sorted(sent))
        self.assertEqual(got, sorted(got))
        self.assertEqual(got[-1], 50_000)
        self.assertEqual(outgoing.bytes_done, 50_000)
        self.assertEqual(self.yoda_events.started, [outgoing])
        self.assertEqual(self.hans_events.started, [incoming])

    def test_window_is_respected(self) -> None:
        self.settings = TransferSettings(chunk_size=100, receive_window=8, linger=1.0)
        self.setUp()
        most = []

        def watch(source, destination, datagram):
            if source == YODA and datagram[3] == udpwire.DATA:
                outgoing = self.yoda.active()[0]
                most.append(max(outgoing._in_flight, default=0) - outgoing.lowest_unacked)
            return datagram

        self.network.tamper = watch
        self.connect()
        path = self.make_file(20_000)
        self.start(path)
        self.finish()
        self.assertReceived(path)
        self.assertLess(max(most), 8)

    def test_ends_are_idle_afterwards(self) -> None:
        self.connect()
        self.start(self.make_file(5_000))
        self.finish()
        self.assertEqual(self.yoda.active(), [])
        self.assertEqual(self.hans.active(), [])
        self.assertTrue(self.network.idle())


class SavedNameTests(TransferTestCase):
    """Issue 15, item 5: a received file never replaces anything in the download directory."""

    def receive(self, sender: str = "yoda", during: Callable[[], None] | None = None):
        self.connect()
        path = self.make_file(30_000)
        incoming = self.hans.expect(sender, path.name, 30_000, TOKEN)
        self.yoda.send_file("hans", path, path.name, 30_000, *HANS, TOKEN)
        if during is not None:
            self.run_until(lambda: incoming.bytes_done > 0)
            during()
        self.finish()
        self.assertEqual(self.hans_events.succeeded, [incoming])
        self.assertEqual(incoming.path.read_bytes(), path.read_bytes())
        return incoming

    def test_an_existing_file_is_kept(self) -> None:
        mine = self.downloads / "yoda_lecture.bin"
        mine.write_bytes(b"the first lecture")
        incoming = self.receive()
        self.assertEqual(mine.read_bytes(), b"the first lecture")
        self.assertEqual(incoming.path, self.downloads / "yoda_lecture (2).bin")

    def test_a_file_created_during_the_transfer_is_kept(self) -> None:
        mine = self.downloads / "yoda_lecture.bin"
        incoming = self.receive(during=lambda: mine.write_bytes(b"written meanwhile"))
        self.assertEqual(mine.read_bytes(), b"written meanwhile")
        self.assertEqual(incoming.path, self.downloads / "yoda_lecture (2).bin")

    def test_numbers_go_on(self) -> None:
        for name in ("yoda_lecture.bin", "yoda_lecture (2).bin"):
            (self.downloads / name).write_bytes(b"older")
        (self.downloads / "yoda_lecture (3).bin").mkdir()
        incoming = self.receive()
        self.assertEqual(incoming.path, self.downloads / "yoda_lecture (4).bin")

    def test_a_symbolic_link_is_not_followed(self) -> None:
        victim = self.root / "victim.txt"
        victim.write_bytes(b"precious")
        link = self.downloads / "yoda_lecture.bin"
        link.symlink_to(victim)
        dangling = self.downloads / "yoda_lecture (2).bin"
        dangling.symlink_to(self.root / "nowhere")
        incoming = self.receive()
        self.assertEqual(victim.read_bytes(), b"precious")
        self.assertEqual(os.readlink(link), str(victim))
        self.assertFalse((self.root / "nowhere").exists())
        self.assertEqual(incoming.path, self.downloads / "yoda_lecture (3).bin")
        self.assertFalse(incoming.path.is_symlink())

    def test_a_sender_named_like_a_path_cannot_pass_for_another(self) -> None:
        # "../yoda" used to save as "yoda_lecture.bin", over the real yoda's file.
        genuine = self.downloads / "yoda_lecture.bin"
        genuine.write_bytes(b"from the real yoda")
        incoming = self.receive(sender="../yoda")
        self.assertEqual(genuine.read_bytes(), b"from the real yoda")
        self.assertEqual(incoming.path, self.downloads / "%2E%2E%2Fyoda_lecture.bin")
        self.assertEqual(sorted(p.name for p in self.downloads.iterdir()),
                         ["%2E%2E%2Fyoda_lecture.bin", "yoda_lecture.bin"])

    def test_no_free_name_fails_and_leaves_nothing(self) -> None:
        self.patch(downloads, "MAX_COPIES", 2)
        for name in ("yoda_lecture.bin", "yoda_lecture (2).bin"):
            (self.downloads / name).write_bytes(b"older")
        self.connect()
        path = self.make_file(3_000)
        outgoing, incoming = self.start(path)
        self.finish()
        [(failed, reason)] = self.hans_events.failed
        self.assertIs(failed, incoming)
        self.assertIn("could not save", reason)
        self.assertEqual(sorted(p.name for p in self.downloads.iterdir()),
                         ["yoda_lecture (2).bin", "yoda_lecture.bin"])


class LossyNetworkTests(TransferTestCase):
    def transfer_over_a_bad_network(self, seed: int, loss: float, duplicate: float, reorder: float,
                                    size: int = 200_000) -> tuple[OutgoingTransfer, IncomingTransfer]:
        rng = random.Random(seed)
        self.connect(
            lossy(self.clock, rng, loss, duplicate, reorder, self.lossy),
            lossy(self.clock, rng, loss, duplicate, reorder, self.lossy),
        )
        path = self.make_file(size, seed)
        outgoing, incoming = self.start(path)
        self.finish()
        self.assertReceived(path)
        self.assertEqual(len(self.yoda_events.succeeded), 1)
        self.assertEqual(len(self.hans_events.succeeded), 1)
        return outgoing, incoming

    def test_loss_duplication_and_reordering(self) -> None:
        for seed in range(1, 6):
            with self.subTest(seed=seed):
                self.setUp()
                outgoing, incoming = self.transfer_over_a_bad_network(seed, 0.1, 0.1, 0.2)
                self.assertGreater(outgoing.retransmissions, 0)
                self.assertGreater(incoming.duplicates, 0)
                self.assertGreater(sum(w.dropped for w in self.lossy), 0)
                self.assertGreater(sum(w.duplicated for w in self.lossy), 0)
                self.assertGreater(sum(w.delayed for w in self.lossy), 0)
                self.tearDown()

    def test_heavy_loss(self) -> None:
        self.transfer_over_a_bad_network(7, 0.3, 0.0, 0.0, size=50_000)

    def test_only_duplicates(self) -> None:
        outgoing, incoming = self.transfer_over_a_bad_network(8, 0.0, 0.5, 0.0)
        self.assertGreater(incoming.duplicates, 0)

    def test_only_reordering(self) -> None:
        self.transfer_over_a_bad_network(9, 0.0, 0.0, 0.5)

    def test_twenty_megabytes_over_a_lossy_network(self) -> None:
        self.settings = TransferSettings(chunk_size=16_000, receive_window=256, linger=1.0)
        self.setUp()
        self.transfer_over_a_bad_network(10, 0.05, 0.05, 0.05, size=20_000_000)

    def test_lost_accept_and_done_are_recovered(self) -> None:
        dropped: list[int] = []

        def drop_first_answers(source, destination, datagram):
            kind = datagram[3]
            if source == HANS and kind in (udpwire.ACCEPT, udpwire.DONE) and kind not in dropped:
                dropped.append(kind)
                return None
            return datagram

        self.network.tamper = drop_first_answers
        self.connect()
        path = self.make_file(20_000)
        self.start(path)
        self.finish()
        self.assertReceived(path)
        self.assertEqual(sorted(dropped), [udpwire.ACCEPT, udpwire.DONE])


class FailureTests(TransferTestCase):
    def test_receiver_vanishes_midway(self) -> None:
        self.connect()
        path = self.make_file(300_000)
        outgoing, incoming = self.start(path)
        self.run_until(lambda: incoming.bytes_done > 50_000)
        self.network.tamper = lambda source, destination, datagram: None
        self.finish()
        [(_, sender_reason)] = self.yoda_events.failed
        [(_, receiver_reason)] = self.hans_events.failed
        self.assertEqual(sender_reason, "hans stopped answering")
        self.assertEqual(receiver_reason, "yoda stopped sending")
        self.assertNothingSaved()

    def test_nobody_answers(self) -> None:
        self.network.attach(YODA, self.yoda)
        path = self.make_file(1_000)
        self.yoda.send_file("hans", path, path.name, 1_000, *HANS, TOKEN)
        self.finish()
        [(_, reason)] = self.yoda_events.failed
        self.assertEqual(reason, "hans did not answer")

    def test_sender_never_starts(self) -> None:
        self.connect()
        self.hans.expect("yoda", "lecture.bin", 1_000, TOKEN)
        self.finish()
        [(_, reason)] = self.hans_events.failed
        self.assertEqual(reason, "yoda never started sending it")
        self.assertNothingSaved()

    def test_corrupted_chunk_fails_the_checksum(self) -> None:
        corrupted = []

        def corrupt_chunk_five(source, destination, datagram):
            if datagram[3] == udpwire.DATA and not corrupted:
                message = udpwire.decode(datagram)
                if message.seq == 5:
                    corrupted.append(True)
                    payload = bytes([message.payload[0] ^ 0xFF]) + message.payload[1:]
                    return udpwire.encode_data(message.transfer, 5, payload)
            return datagram

        self.network.tamper = corrupt_chunk_five
        self.connect()
        self.start(self.make_file(20_000))
        self.finish()
        [(_, receiver_reason)] = self.hans_events.failed
        [(_, sender_reason)] = self.yoda_events.failed
        self.assertEqual(receiver_reason, "the SHA-256 checksum did not match")
        self.assertEqual(sender_reason, "hans cancelled it: the SHA-256 checksum did not match")
        self.assertNothingSaved()

    def test_start_with_a_wrong_token_is_ignored(self) -> None:
        self.connect()
        incoming = self.hans.expect("yoda", "lecture.bin", 1_000, TOKEN)
        forged = udpwire.encode_start(incoming.transfer_id, 1_000, 1_000, "guess", "lecture.bin")
        self.hans.datagram_received(forged, ("127.0.0.1", 6666))
        self.assertIs(incoming.state, State.WAITING)
        self.assertIsNone(incoming.address)
        self.finish()

    def test_file_that_does_not_match_the_announcement(self) -> None:
        self.connect()
        path = self.make_file(2_000)
        self.start(path, announced=3_000)
        self.finish()
        [(_, receiver_reason)] = self.hans_events.failed
        [(_, sender_reason)] = self.yoda_events.failed
        self.assertEqual(receiver_reason, "the file does not match what the server announced")
        self.assertIn("does not match", sender_reason)
        self.assertNothingSaved()

    def test_sender_quits_midway(self) -> None:
        self.connect()
        outgoing, incoming = self.start(self.make_file(300_000))
        self.run_until(lambda: incoming.bytes_done > 10_000)
        self.yoda.close_all("quit")
        self.finish()
        [(_, sender_reason)] = self.yoda_events.failed
        [(_, receiver_reason)] = self.hans_events.failed
        self.assertEqual(sender_reason, "quit")
        self.assertEqual(receiver_reason, "yoda cancelled it: quit")
        self.assertNothingSaved()

    def test_receiver_quits_midway(self) -> None:
        self.connect()
        outgoing, incoming = self.start(self.make_file(300_000))
        self.run_until(lambda: incoming.bytes_done > 10_000)
        self.hans.close_all("logged out")
        self.finish()
        [(_, sender_reason)] = self.yoda_events.failed
        self.assertEqual(sender_reason, "hans cancelled it: logged out")
        self.assertNothingSaved()

    def test_file_shrinks_while_it_is_sent(self) -> None:
        self.connect()
        path = self.make_file(300_000)
        outgoing, incoming = self.start(path)
        self.run_until(lambda: incoming.bytes_done > 10_000)
        path.write_bytes(b"short")
        self.finish()
        [(_, sender_reason)] = self.yoda_events.failed
        self.assertEqual(sender_reason, "the file changed while it was being sent")
        [(_, receiver_reason)] = self.hans_events.failed
        self.assertEqual(receiver_reason, "yoda cancelled it: the file changed while it was being sent")
        self.assertNothingSaved()

    def test_not_enough_disk_space(self) -> None:
        self.connect()
        path = self.make_file(1_000)
        self.patch(
            __import__("chatservice.client.filetransfer", fromlist=["shutil"]).shutil,
            "disk_usage",
            lambda directory: type("Usage", (), {"free": 10})(),
        )
        self.start(path)
        self.finish()
        [(_, receiver_reason)] = self.hans_events.failed
        self.assertEqual(receiver_reason, "not enough disk space")
        self.assertNothingSaved()


class DatagramRoutingTests(TransferTestCase):
    def test_garbage_and_strangers_are_ignored(self) -> None:
        self.connect()
        path = self.make_file(5_000)
        outgoing, incoming = self.start(path)
        self.hans.datagram_received(b"", YODA)
        self.hans.datagram_received(b"hello there, this is not ours", YODA)
        self.hans.datagram_received(udpwire.encode_done(b"12345678"), YODA)
        self.hans.datagram_received(
            udpwire.encode_data(incoming.transfer_id, 0, b"x")[:-3], YODA
        )
        self.run_until(lambda: incoming.state is State.RUNNING)
        # Only the address that started the transfer may feed it.
        self.hans.datagram_received(
            udpwire.encode_abort(incoming.transfer_id, "forged"), ("127.0.0.1", 7777)
        )
        self.finish()
        self.assertReceived(path)

    def test_chunks_of_the_wrong_length_are_ignored(self) -> None:
        self.connect()
        path = self.make_file(5_000)
        outgoing, incoming = self.start(path)
        self.run_until(lambda: incoming.state is State.RUNNING)
        self.hans.datagram_received(
            udpwire.encode_data(incoming.transfer_id, 0, b"short"), YODA
        )
        self.hans.datagram_received(
            udpwire.encode_data(incoming.transfer_id, 999, b"x" * 1000), YODA
        )
        self.assertEqual(incoming.next_chunk, 0)
        self.finish()
        self.assertReceived(path)

    def test_unusable_announcements_are_refused(self) -> None:
        with self.assertRaises(TransferError):
            self.hans.expect("yoda", "x", -1, TOKEN)
        self.hans.expect("yoda", "x", 1, TOKEN)
        with self.assertRaises(TransferError):
            self.hans.expect("yoda", "x", 1, TOKEN)
        path = self.make_file(10)
        with self.assertRaises(TransferError):
            self.yoda.send_file("hans", path, "x", 10, "hans.example", 5002, "t2")
        with self.assertRaises(TransferError):
            self.yoda.send_file("hans", path, "x", 10, "127.0.0.1", 0, "t2")
        with self.assertRaises(TransferError):
            self.yoda.send_file("hans", self.root / "missing", "x", 10, "127.0.0.1", 5002, "t2")
        self.hans.close_all("done")

    def test_when_idle(self) -> None:
        self.connect()
        self.assertEqual(self.successResultOf(self.yoda.when_idle()), None)
        self.start(self.make_file(5_000))
        waiting = self.yoda.when_idle()
        self.assertNoResult(waiting)
        self.finish()
        self.assertIsNone(self.successResultOf(waiting))

    def test_send_errors_count_as_losses(self) -> None:
        failures = []

        def flaky(write):
            def send(datagram, address):
                if len(failures) < 3:
                    failures.append(datagram)
                    raise OSError(11, "Resource temporarily unavailable")
                return write(datagram, address)
            return send

        self.connect(wrap_yoda=flaky)
        path = self.make_file(5_000)
        self.start(path)
        self.finish()
        self.assertReceived(path)
        self.assertEqual(len(failures), 3)


class QuittingReceiverTests(TransferTestCase):
    def test_receiver_quitting_while_lingering_confirms_again(self) -> None:
        dones = []

        def drop_first_done(source, destination, datagram):
            if datagram[3] == udpwire.DONE:
                dones.append(datagram)
                if len(dones) == 1:
                    return None
            return datagram

        self.network.tamper = drop_first_done
        self.connect()
        path = self.make_file(5_000)
        outgoing, incoming = self.start(path)
        self.run_until(lambda: incoming.state is State.LINGERING)
        self.hans.close_all("quit")
        self.finish()
        self.assertReceived(path)
        self.assertEqual(self.yoda_events.succeeded, [outgoing])
        self.assertEqual(len(dones), 2)
