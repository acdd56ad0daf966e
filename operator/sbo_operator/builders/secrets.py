"""Generated passwords and Secret data, without randomness of their own.

The I/O layer passes ``secrets.token_bytes(32)`` (or more) only when a Secret does not exist
yet; when it does, its existing values are kept. Several passwords are derived from the one
draw with HMAC-SHA256 keyed by the random bytes, so each has the full 256 bits of entropy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

__all__ = [
    "MIN_RANDOM_BYTES",
    "decode_secret_data",
    "derive_password",
    "encode_secret_data",
    "existing_or_derived_password",
]

MIN_RANDOM_BYTES = 32


def derive_password(random_bytes: bytes, *, purpose: str) -> str:
    """A 43-character URL-safe password for ``purpose`` from at least 32 random bytes.

    URL-safe base64 needs no quoting in URIs, shell scripts, pgpass or redis.conf.
    """
    if len(random_bytes) < MIN_RANDOM_BYTES:
        raise ValueError(f"need at least {MIN_RANDOM_BYTES} random bytes, got {len(random_bytes)}")
    digest = hmac.new(random_bytes, purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's base64 ``data`` as text; undecodable entries are left out."""
    decoded: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    return decoded


def encode_secret_data(values: Mapping[str, str]) -> dict[str, str]:
    """Text values as a Secret's base64 ``data``, in key order."""
    return {key: base64.b64encode(values[key].encode()).decode() for key in sorted(values)}


def existing_or_derived_password(
    existing: Mapping[str, str], *, key: str, random_bytes: bytes | None, purpose: str
) -> str:
    """The decoded existing value of ``key`` if non-empty, else a new password from the bytes."""
    if existing.get(key):
        return existing[key]
    if random_bytes is None:
        raise ValueError(f"the Secret has no {key!r} yet: pass random_bytes (secrets.token_bytes(32))")
    return derive_password(random_bytes, purpose=purpose)
