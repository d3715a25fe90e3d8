"""A real llama-server's slots, as tests watch them: how many are busy, and how long until none is."""

from __future__ import annotations

import time

import httpx


def busy_slots(llama_url: str) -> int:
    return sum(1 for slot in httpx.get(f"{llama_url}/slots", timeout=5).json() if slot["is_processing"])


def seconds_until_idle(llama_url: str, limit: float) -> float:
    """Seconds until no slot of the server is processing, polled every 20 ms; AssertionError after `limit`."""
    started = time.monotonic()
    while busy_slots(llama_url):
        waited = time.monotonic() - started
        if waited > limit:
            raise AssertionError(f"a slot of {llama_url} was still busy after {waited:.1f} s")
        time.sleep(0.02)
    return time.monotonic() - started
