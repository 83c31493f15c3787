"""Where a received file goes: its name in the download directory, and saving it there.

A received file is saved as ``<sender>_<filename>``, where:

* ``<sender>`` is the sender's user name, percent-encoded: every character
  but the ASCII letters, digits and ``-`` becomes the ``%XX`` escapes of its
  UTF-8 bytes (``../hans`` is ``%2E%2E%2Fhans``, ``yоda`` with a Cyrillic
  ``о`` is ``y%D0%BEda``).  It holds no path separator, no dot and no
  underscore, so the first ``_`` ends it, two different names never give the
  same file name, and ``urllib.parse.unquote`` gives the name back.  A name
  whose encoding is longer than :data:`MAX_SENDER_BYTES` keeps its first
  part, then ``~`` and a SHA-256 prefix of the whole name;
* ``<filename>`` is the announced name without directories or control
  characters (:func:`safe_name`), shortened (keeping its extension) so the
  whole stays within :data:`MAX_NAME_BYTES`.

:func:`save_new` never replaces anything: when the name is taken (by a file,
a directory or a symbolic link, even a dangling one) the file is saved as
``<name> (2).<ext>``, ``(3)`` and so on.  The name is claimed with
``O_CREAT | O_EXCL | O_NOFOLLOW``, so neither a file created meanwhile nor a
symbolic link is ever written through; the finished file is then renamed onto
that claim (a rename replaces the directory entry, never what a link points
to).
"""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path

from chatservice.commands import remove_control_characters

MAX_NAME = 200
"""Bytes (UTF-8) of a file name as :func:`safe_name` leaves it."""
MAX_NAME_BYTES = 240
"""Bytes of a saved name before any `` (N)``: room is left for one within 255."""
MAX_SENDER_BYTES = 96
"""Bytes of the encoded sender kept whole; a longer one is shortened with a hash."""
MAX_EXTENSION = 16
"""Characters of an extension that a shortened or numbered name keeps."""
MAX_COPIES = 1000
"""``(N)`` numbers tried before giving up."""

_KEPT = frozenset(string.ascii_letters + string.digits + "-")


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _split_extension(name: str) -> tuple[str, str]:
    """``name`` as (stem, extension); the extension is ``""`` when there is none or it is long."""
    stem, extension = os.path.splitext(name)
    if not stem or len(extension) > MAX_EXTENSION:
        return name, ""
    return stem, extension


def safe_name(name: str) -> str:
    """``name`` made safe as one file name: no directories, no control characters."""
    name = name.encode("utf-8", "replace").decode("utf-8")
    name = remove_control_characters(name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    name = name.replace("\t", " ")
    if name in ("", ".", ".."):
        name = "file"
    return shorten(name, MAX_NAME)


def shorten(name: str, limit: int) -> str:
    """``name`` within ``limit`` bytes of UTF-8, keeping its extension when it can."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, extension = _split_extension(name)
    room = limit - len(extension.encode("utf-8"))
    if room < 1:
        return _cut(name, limit)
    return _cut(stem, room) + extension


def sender_label(sender: str) -> str:
    """``sender`` as the first part of a saved name: reversible, and never a path.

    Characters other than ASCII letters, digits and ``-`` become ``%XX``
    escapes of their UTF-8 bytes (a lone surrogate too, as its own bytes).
    """
    label = "".join(
        char if char in _KEPT else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        for char in sender
    )
    if len(label) <= MAX_SENDER_BYTES:
        return label
    digest = hashlib.sha256(sender.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    head = label[: MAX_SENDER_BYTES - 25]
    escape = head.rfind("%", len(head) - 2)
    if escape >= 0:
        head = head[:escape]
    return f"{head}~{digest}"


def received_name(sender: str, filename: str) -> str:
    """The name a file from ``sender`` gets in the download directory: ``<sender>_<filename>``."""
    prefix = f"{sender_label(sender)}_"
    return prefix + shorten(safe_name(filename), MAX_NAME_BYTES - len(prefix))


def numbered(name: str, number: int) -> str:
    """``name`` for its ``number``-th copy: ``report (2).txt``; ``name`` itself for 1."""
    if number == 1:
        return name
    stem, extension = _split_extension(name)
    return f"{stem} ({number}){extension}"


def save_new(temporary: Path, directory: Path, name: str) -> Path:
    """Move ``temporary`` into ``directory`` as ``name``, or its first free numbered copy.

    Nothing there is replaced and no symbolic link is followed: the name is
    claimed with ``O_EXCL | O_NOFOLLOW`` before ``temporary`` is renamed onto
    the claim.  Blocking file I/O (a few system calls).

    :returns: the path the file now has.
    :raises OSError: the file cannot be saved (``temporary`` is left as it is).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for number in range(1, MAX_COPIES + 1):
        path = directory / numbered(name, number)
        try:
            claim = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        os.close(claim)
        try:
            os.replace(temporary, path)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        return path
    raise FileExistsError(f"{directory / name} and {MAX_COPIES - 1} numbered copies exist")
