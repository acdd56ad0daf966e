"""Password hashing (pwdlib, Argon2) and access tokens (PyJWT, HS256)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from pwdlib import PasswordHash

ALGORITHM = "HS256"

password_hash = PasswordHash.recommended()

# Verified against when the user does not exist, so both paths take the same time.
DUMMY_HASH = password_hash.hash("not-a-real-password")


def create_access_token(subject: str, secret_key: str, expires_delta: timedelta) -> str:
    now = datetime.now(UTC)
    payload = {"sub": subject, "iat": now, "exp": now + expires_delta}
    return jwt.encode(payload, secret_key, algorithm=ALGORITHM)


def decode_access_token(token: str, secret_key: str) -> str:
    """Return the token's subject. Raises ``jwt.InvalidTokenError`` (expired, forged, malformed)."""
    payload = jwt.decode(
        token, secret_key, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "sub"]}
    )
    return str(payload["sub"])


def verify_password(plain_password: str, hashed_password: str) -> bool:
    return password_hash.verify(plain_password, hashed_password)


def get_password_hash(password: str) -> str:
    return password_hash.hash(password)
