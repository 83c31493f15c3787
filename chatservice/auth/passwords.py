"""Password storage: salted scrypt hashes (``hashlib.scrypt``), and plain entries.

A stored secret is either a plain password (the sample accounts file) or
``$scrypt$ln=14,r=8,p=1$<salt>$<hash>`` (base64, no padding).  Hashing and
verifying a hash take tens of milliseconds by design: callers run them in a
thread, never on the reactor.  Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "$scrypt$"
LOG2_N, R, P = 14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
_MAX_MEMORY = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def is_hashed(secret: str) -> bool:
    """Whether ``secret`` is a hash (else it is a plain password)."""
    return secret.startswith(PREFIX)


def hash_password(password: str, log2_n: int = LOG2_N) -> str:
    """A new salted scrypt hash of ``password`` (slow: call it in a thread)."""
    salt = os.urandom(SALT_BYTES)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=2**log2_n, r=R, p=P,
        maxmem=_MAX_MEMORY, dklen=KEY_BYTES,
    )
    return f"{PREFIX}ln={log2_n},r={R},p={P}${_b64(salt)}${_b64(key)}"


def check_hash_format(secret: str) -> str | None:
    """Why ``secret`` is not a well-formed hash, or ``None`` when it is."""
    try:
        _parse(secret)
    except ValueError as e:
        return str(e)
    return None


def _parse(secret: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        _, _, params, salt, key = secret.split("$")
        fields = dict(field.split("=", 1) for field in params.split(","))
        log2_n, r, p = int(fields["ln"]), int(fields["r"]), int(fields["p"])
        salt_bytes, key_bytes = _unb64(salt), _unb64(key)
    except (ValueError, KeyError, TypeError):
        raise ValueError("malformed scrypt hash") from None
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and key_bytes):
        raise ValueError("scrypt parameters out of range")
    return log2_n, r, p, salt_bytes, key_bytes


def verify_password(password: str, secret: str) -> bool:
    """Whether ``password`` matches the stored ``secret`` (plain or hashed).

    Verifying a hash is slow: call it in a thread.
    """
    candidate = password.encode("utf-8")
    if not is_hashed(secret):
        return hmac.compare_digest(secret.encode("utf-8"), candidate)
    try:
        log2_n, r, p, salt, key = _parse(secret)
    except ValueError:
        return False
    derived = hashlib.scrypt(
        candidate, salt=salt, n=2**log2_n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=len(key)
    )
    return hmac.compare_digest(derived, key)
