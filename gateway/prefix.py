"""A conversation's prefixes as keyed hashes, for finding a saved prompt cache without tokenizing on the hot path.

The model has read a request's messages in order, so each message boundary marks a prefix another request may share:
the next turn of a conversation repeats every message of the last one. A prefix's hash chains the hash of the one
before it with the next message, so one hash names the whole prefix. The chain starts from the model, the tools and
the API key (unless KV_CACHE_SHARED): another key's identical conversation has other hashes and never matches.
The hashes are keyed with the SECRET_KEY: the index of saved caches on disk reveals nothing of the text.

Each boundary also carries the prefix's length in characters, the measure of what a match saves (a token is about
four characters: matching is by hash, never by this length).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings

MAX_BOUNDARIES = 64  # the longest prefixes are kept: they are the ones worth restoring


@dataclass(frozen=True)
class Boundary:
    hash: str
    chars: int


@dataclass(frozen=True)
class Conversation:
    """A request's prefix hashes and the API key they belong to ("*" when caches are shared)."""

    boundaries: list[Boundary]
    owner: str


@cache
def _secret(secret_key: str) -> bytes:
    return hashlib.sha256(b"jetson-gateway prompt prefixes\0" + secret_key.encode()).digest()


def _digest(previous: str, part: str) -> str:
    secret = _secret(settings.SECRET_KEY)
    return hmac.new(secret, f"{previous}\0{part}".encode(), hashlib.sha256).hexdigest()[:32]


def _canonical(value: Any) -> Any:
    """A message as the model reads it: text parts joined, empty fields dropped, keys sorted (a client that sends the
    last answer back as a string or as one text part repeats the same prefix)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items()) if v not in (None, "", [], {})}
    if isinstance(value, list):
        if value and all(isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text") for p in value):
            return "".join(str(p.get("text") or "") for p in value)
        return [_canonical(v) for v in value]
    return value


def conversation(
    messages: list[Any], *, model: str, key_id: int | None, system: Any = None, tools: Any = None
) -> Conversation:
    """The boundaries of a request's messages (a chat's, the Messages API's with its `system`, the Responses API's
    input items with its `instructions`), in order, at most the last MAX_BOUNDARIES."""
    owner = "*" if settings.KV_CACHE_SHARED or key_id is None else str(key_id)
    previous = _digest(owner, json.dumps([model, _canonical(tools)], sort_keys=True, default=str))
    parts = ([{"role": "system", "content": system}] if system else []) + list(messages)
    boundaries, chars = [], 0
    for message in parts:
        text = json.dumps(_canonical(message), sort_keys=True, ensure_ascii=False, default=str)
        chars += len(text)
        previous = _digest(previous, text)
        boundaries.append(Boundary(previous, chars))
    return Conversation(boundaries[-MAX_BOUNDARIES:], owner)


def matched(chain: Sequence[str], boundaries: Sequence[Boundary]) -> Boundary | None:
    """The longest of `boundaries` whose prefix `chain` (the hashes a slot or a saved cache holds) holds."""
    held = set(chain)
    for boundary in reversed(boundaries):
        if boundary.hash in held:
            return boundary
    return None


def as_message(boundaries: list[Boundary]) -> list[list[Any]]:
    return [[b.hash, b.chars] for b in boundaries]


def from_message(value: Any) -> list[Boundary]:
    """The boundaries an acquire carries; whatever is not a [hash, chars] pair is left out."""
    if not isinstance(value, list):
        return []
    return [
        Boundary(item[0], int(item[1]))
        for item in value[-MAX_BOUNDARIES:]
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], int)
    ]
