"""The datagrams of a peer-to-peer file transfer: encoding and decoding only, no I/O.

A file goes from the sender's UDP port straight to the receiver's, in
numbered chunks.  Every datagram starts with the same 12-byte header
(integers are big-endian)::

    0  2  magic  b"CF"
    2  1  version  1
    3  1  kind  (below)
    4  8  transfer id: the first 8 bytes of SHA-256(b"chatservice-file:" + token)

The token is the one the server gave both sides (``file_address`` to the
sender, ``file_incoming`` to the receiver), so each side knows the transfer
id before the first datagram, and a datagram whose id was never announced is
dropped unread.  The kinds and their bodies:

``START`` (1, sender to receiver)
    ``size`` u64, ``chunk_size`` u32, token length u16, the token (UTF-8),
    then the file name (UTF-8, the rest).  The receiver accepts it only if
    the token is exactly the one announced for this id and the size and name
    match the announcement; from then on it accepts datagrams of this
    transfer only from the address the ``START`` came from.
``ACCEPT`` (2, receiver to sender)
    ``window`` u32: how many chunks past the first missing one the receiver
    buffers.  The sender never has chunks beyond that in flight.
``DATA`` (3, sender to receiver)
    ``seq`` u32 (chunk number, from 0), then the chunk: ``chunk_size`` bytes,
    the last chunk may be shorter.
``ACK`` (4, receiver to sender)
    ``next`` u32: every chunk below it has arrived (a cumulative ack); then a
    selective-ack bitmap (the rest): bit ``i`` (least significant bit of byte
    0 first) set means chunk ``next + 1 + i`` has arrived too.
``FIN`` (5, sender to receiver)
    The SHA-256 digest of the whole file (32 bytes), sent once every chunk is
    acknowledged.
``DONE`` (6, receiver to sender)
    Empty: the digest matched and the file is saved under its final name.
``ABORT`` (7, either way)
    A reason (UTF-8, the rest, at most :data:`MAX_REASON` bytes).  The
    transfer is over and the receiver deletes what it had written.

``START`` and ``FIN`` are repeated with a back-off until answered; a
receiver answers a repeated ``START`` or ``FIN`` again, so a lost answer
costs one timeout.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Union

MAGIC = b"CF"
VERSION = 1
HEADER = struct.Struct("!2sBB8s")
HEADER_SIZE = HEADER.size

START, ACCEPT, DATA, ACK, FIN, DONE, ABORT = range(1, 8)
KIND_NAMES = {
    START: "START",
    ACCEPT: "ACCEPT",
    DATA: "DATA",
    ACK: "ACK",
    FIN: "FIN",
    DONE: "DONE",
    ABORT: "ABORT",
}

MAX_DATAGRAM = 65536
"""Read buffer size for the UDP port: more than the largest datagram (``MAX_CHUNK`` + header)."""
MAX_REASON = 200
MAX_TOKEN = 1024
DIGEST_SIZE = 32

_START = struct.Struct("!QIH")
_U32 = struct.Struct("!I")


class MalformedDatagram(ValueError):
    """A datagram that is not one of ours, or is damaged."""


def transfer_id(token: str) -> bytes:
    """The 8-byte id both sides derive from the server's token."""
    return hashlib.sha256(b"chatservice-file:" + token.encode("utf-8")).digest()[:8]


@dataclass(frozen=True)
class Start:
    transfer: bytes
    size: int
    chunk_size: int
    token: str
    filename: str


@dataclass(frozen=True)
class Accept:
    transfer: bytes
    window: int


@dataclass(frozen=True)
class Data:
    transfer: bytes
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    transfer: bytes
    next: int
    sack: int
    """Selective acks as an integer: bit ``i`` set means chunk ``next + 1 + i`` arrived."""


@dataclass(frozen=True)
class Fin:
    transfer: bytes
    digest: bytes


@dataclass(frozen=True)
class Done:
    transfer: bytes


@dataclass(frozen=True)
class Abort:
    transfer: bytes
    reason: str


Datagram = Union[Start, Accept, Data, Ack, Fin, Done, Abort]


def _header(kind: int, transfer: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, transfer)


def encode_start(transfer: bytes, size: int, chunk_size: int, token: str, filename: str) -> bytes:
    raw_token = token.encode("utf-8")
    return (
        _header(START, transfer)
        + _START.pack(size, chunk_size, len(raw_token))
        + raw_token
        + filename.encode("utf-8")
    )


def encode_accept(transfer: bytes, window: int) -> bytes:
    return _header(ACCEPT, transfer) + _U32.pack(window)


def encode_data(transfer: bytes, seq: int, payload: bytes) -> bytes:
    return _header(DATA, transfer) + _U32.pack(seq) + payload


def encode_ack(transfer: bytes, next_chunk: int, sack: int = 0) -> bytes:
    bitmap = sack.to_bytes((sack.bit_length() + 7) // 8, "little") if sack else b""
    return _header(ACK, transfer) + _U32.pack(next_chunk) + bitmap


def encode_fin(transfer: bytes, digest: bytes) -> bytes:
    return _header(FIN, transfer) + digest


def encode_done(transfer: bytes) -> bytes:
    return _header(DONE, transfer)


def encode_abort(transfer: bytes, reason: str) -> bytes:
    raw = reason.encode("utf-8")[:MAX_REASON]
    return _header(ABORT, transfer) + raw.decode("utf-8", "ignore").encode("utf-8")


def peek_transfer(datagram: bytes) -> bytes:
    """The transfer id of ``datagram``, checking only the header.

    :raises MalformedDatagram: not a datagram of this protocol and version.
    """
    if len(datagram) < HEADER_SIZE:
        raise MalformedDatagram("too short")
    magic, version, kind, transfer = HEADER.unpack_from(datagram)
    if magic != MAGIC or version != VERSION or kind not in KIND_NAMES:
        raise MalformedDatagram("not a chatservice file-transfer datagram")
    return transfer


def decode(datagram: bytes) -> Datagram:
    """Parse one datagram.

    :raises MalformedDatagram: for anything that is not a valid datagram.
    """
    transfer = peek_transfer(datagram)
    kind = datagram[3]
    body = memoryview(datagram)[HEADER_SIZE:]
    try:
        if kind == DATA:
            if len(body) < 4:
                raise MalformedDatagram("DATA without a chunk number")
            return Data(transfer, _U32.unpack_from(body)[0], bytes(body[4:]))
        if kind == ACK:
            if len(body) < 4:
                raise MalformedDatagram("ACK without a chunk number")
            return Ack(transfer, _U32.unpack_from(body)[0], int.from_bytes(body[4:], "little"))
        if kind == START:
            size, chunk_size, token_length = _START.unpack_from(body)
            rest = bytes(body[_START.size :])
            if token_length > MAX_TOKEN or len(rest) < token_length:
                raise MalformedDatagram("START with a bad token length")
            token = rest[:token_length].decode("utf-8")
            filename = rest[token_length:].decode("utf-8")
            return Start(transfer, size, chunk_size, token, filename)
        if kind == ACCEPT:
            if len(body) != 4:
                raise MalformedDatagram("ACCEPT of the wrong length")
            return Accept(transfer, _U32.unpack_from(body)[0])
        if kind == FIN:
            if len(body) != DIGEST_SIZE:
                raise MalformedDatagram("FIN of the wrong length")
            return Fin(transfer, bytes(body))
        if kind == DONE:
            if len(body):
                raise MalformedDatagram("DONE with a body")
            return Done(transfer)
        reason = bytes(body[:MAX_REASON]).decode("utf-8", "replace")
        return Abort(transfer, reason)
    except (struct.error, UnicodeDecodeError) as e:
        raise MalformedDatagram(str(e)) from None
