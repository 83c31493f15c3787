"""The file-transfer datagrams: every kind encodes and decodes; damage is refused."""

from __future__ import annotations

import hashlib

from twisted.trial import unittest

from chatservice.client import udpwire

TID = udpwire.transfer_id("token-1")


class TransferIdTests(unittest.TestCase):
    def test_derived_from_the_token(self) -> None:
        self.assertEqual(len(TID), 8)
        self.assertEqual(
            TID, hashlib.sha256(b"chatservice-file:token-1").digest()[:8]
        )
        self.assertNotEqual(TID, udpwire.transfer_id("token-2"))


class RoundTripTests(unittest.TestCase):
    def test_start(self) -> None:
        datagram = udpwire.encode_start(TID, 20_000_000, 1200, "token-1", "lecture 1.mp4")
        self.assertEqual(
            udpwire.decode(datagram),
            udpwire.Start(TID, 20_000_000, 1200, "token-1", "lecture 1.mp4"),
        )

    def test_start_with_unicode_name(self) -> None:
        datagram = udpwire.encode_start(TID, 5, 64, "t", "résumé ✓.txt")
        self.assertEqual(udpwire.decode(datagram).filename, "résumé ✓.txt")

    def test_accept(self) -> None:
        self.assertEqual(
            udpwire.decode(udpwire.encode_accept(TID, 1024)), udpwire.Accept(TID, 1024)
        )

    def test_data(self) -> None:
        payload = bytes(range(256)) * 4
        self.assertEqual(
            udpwire.decode(udpwire.encode_data(TID, 7, payload)),
            udpwire.Data(TID, 7, payload),
        )

    def test_ack_without_and_with_selective_acks(self) -> None:
        self.assertEqual(udpwire.decode(udpwire.encode_ack(TID, 12)), udpwire.Ack(TID, 12, 0))
        sack = (1 << 0) | (1 << 9) | (1 << 100)
        self.assertEqual(
            udpwire.decode(udpwire.encode_ack(TID, 12, sack)), udpwire.Ack(TID, 12, sack)
        )

    def test_fin_done_abort(self) -> None:
        digest = hashlib.sha256(b"x").digest()
        self.assertEqual(udpwire.decode(udpwire.encode_fin(TID, digest)), udpwire.Fin(TID, digest))
        self.assertEqual(udpwire.decode(udpwire.encode_done(TID)), udpwire.Done(TID))
        self.assertEqual(
            udpwire.decode(udpwire.encode_abort(TID, "disk full")),
            udpwire.Abort(TID, "disk full"),
        )

    def test_abort_reason_is_capped(self) -> None:
        decoded = udpwire.decode(udpwire.encode_abort(TID, "é" * 500))
        self.assertLessEqual(len(decoded.reason.encode("utf-8")), udpwire.MAX_REASON)

    def test_peek(self) -> None:
        self.assertEqual(udpwire.peek_transfer(udpwire.encode_done(TID)), TID)


class MalformedTests(unittest.TestCase):
    def assertMalformed(self, datagram: bytes) -> None:
        with self.assertRaises(udpwire.MalformedDatagram):
            udpwire.decode(datagram)

    def test_too_short(self) -> None:
        self.assertMalformed(b"")
        self.assertMalformed(b"CF\x01\x03abc")

    def test_wrong_magic_version_or_kind(self) -> None:
        good = udpwire.encode_done(TID)
        self.assertMalformed(b"XX" + good[2:])
        self.assertMalformed(good[:2] + b"\x02" + good[3:])
        self.assertMalformed(good[:3] + b"\x09" + good[4:])
        self.assertMalformed(good[:3] + b"\x00" + good[4:])

    def test_truncated_bodies(self) -> None:
        self.assertMalformed(udpwire.encode_data(TID, 1, b"")[:-2])
        self.assertMalformed(udpwire.encode_ack(TID, 1)[:-1])
        self.assertMalformed(udpwire.encode_accept(TID, 1)[:-1])
        self.assertMalformed(udpwire.encode_fin(TID, b"\x00" * 32)[:-1])
        self.assertMalformed(udpwire.encode_start(TID, 1, 64, "token", "f")[:14])

    def test_start_token_longer_than_the_datagram(self) -> None:
        datagram = bytearray(udpwire.encode_start(TID, 1, 64, "token", ""))
        datagram[24:26] = (900).to_bytes(2, "big")
        self.assertMalformed(bytes(datagram))

    def test_start_with_bad_utf8(self) -> None:
        self.assertMalformed(udpwire.encode_start(TID, 1, 64, "t", "") + b"\xff\xfe")

    def test_done_with_a_body(self) -> None:
        self.assertMalformed(udpwire.encode_done(TID) + b"x")
