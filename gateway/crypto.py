"""The API key scheme: a visible prefix plus a secret, stored as the prefix and a SHA-256 digest."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_MARK = "sk-jg-"
PREFIX_LENGTH = 8


def _digest(secret: str) -> str:
    # Keys carry 256 random bits: a fast hash is enough, and a slow password hasher would cost
    # milliseconds on every request for no gain. Not keyed, so rotating SECRET_KEY keeps keys valid.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """Return (plaintext, prefix, digest)."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    plaintext = f"{KEY_MARK}{prefix}.{secrets.token_urlsafe(32)}"
    return plaintext, prefix, _digest(plaintext)


def split_prefix(plaintext: str) -> str | None:
    """The prefix part of a presented key, or None when it is not shaped like one of ours."""
    if not plaintext.startswith(KEY_MARK) or "." not in plaintext:
        return None
    prefix = plaintext[len(KEY_MARK) :].split(".", 1)[0]
    return prefix if len(prefix) == PREFIX_LENGTH else None


def matches(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(_digest(plaintext), digest)
