"""What a planned stop saves: the slots that hold at least KV_CACHE_MIN_TOKENS, none that a request is in, and, when a
request waits for the memory the stop frees, only saves expected within KV_CACHE_SAVE_WAIT_MS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.lifecycle import kvcache, promptcache
from gateway.lifecycle.config import Config, Setup
from gateway.lifecycle.estimate import Estimate
from gateway.prefix import Boundary

MIB = 1024 * 1024


@pytest.fixture
def caches(tmp_path: Path, settings: object, monkeypatch: pytest.MonkeyPatch) -> tuple[promptcache.PromptCaches, list]:
    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    settings.KV_CACHE_MIN_TOKENS = 500  # type: ignore[attr-defined]
    settings.KV_CACHE_SAVE_WAIT_MS = 1000  # type: ignore[attr-defined]
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    config = Config(1, "model", "chat", str(gguf), "", 4096, 2, None, (), 0, 0.0, False)
    setup = Setup(1, "model", config, Estimate(weights=1, kv=4096 * 100_000, compute=0, prompt_cache=0))
    saves: list[int] = []

    async def save(target: object, slot: int, filename: str, timeout: float) -> tuple[int, int, float]:
        saves.append(slot)
        (tmp_path / "kv" / "model" / filename).write_bytes(b"x")
        return 1000, 100 * MIB, 500.0

    monkeypatch.setattr(kvcache, "save", save)
    caches = promptcache.PromptCaches()
    caches.ready(1, 1, 8080, "key", setup, "127.0.0.1")  # 100 kB a token: a 1,000-token slot is 100 MB
    return caches, saves


def hold(caches: promptcache.PromptCaches, slot: int, chars: int, lease: str) -> None:
    caches.running[1].slots.hold(slot, lease, [Boundary(f"h-{lease}", chars)], "7")


def test_it_saves_the_long_prompts_of_free_slots(caches: tuple[promptcache.PromptCaches, list]) -> None:
    prompt_caches, saves = caches
    prompt_caches.running[1].saving = True
    hold(prompt_caches, 0, 4000, "long")  # about 1,000 tokens
    hold(prompt_caches, 1, 400, "short")  # about 100 tokens: cheaper to read again
    prompt_caches.running[1].slots.release("long")
    prompt_caches.running[1].slots.release("short")
    asyncio.run(prompt_caches.save(1, 1, someone_waits=False))
    assert saves == [0]
    assert prompt_caches.summary("model") == {"count": 1, "bytes": 100 * MIB}


def test_a_slot_with_a_request_in_it_is_not_saved(caches: tuple[promptcache.PromptCaches, list]) -> None:
    prompt_caches, saves = caches
    prompt_caches.running[1].saving = True
    hold(prompt_caches, 0, 4000, "busy")
    asyncio.run(prompt_caches.save(1, 1, someone_waits=False))
    assert saves == []


def test_a_slow_save_is_skipped_when_a_request_waits(caches: tuple[promptcache.PromptCaches, list]) -> None:
    prompt_caches, saves = caches
    prompt_caches.running[1].saving = True
    prompt_caches.write_rate = 50 * MIB  # 100 MB would take 2 s: over the 1 s bound
    hold(prompt_caches, 0, 4000, "long")
    prompt_caches.running[1].slots.release("long")
    asyncio.run(prompt_caches.save(1, 1, someone_waits=True))
    assert saves == []
    prompt_caches.write_rate = 200 * MIB  # 0.5 s: within it
    asyncio.run(prompt_caches.save(1, 1, someone_waits=True))
    assert saves == [0]


def test_nothing_is_saved_past_the_hours_write_allowance(
    caches: tuple[promptcache.PromptCaches, list],
) -> None:
    prompt_caches, saves = caches
    prompt_caches.running[1].saving = True
    prompt_caches.disk.writes_per_hour = 150 * MIB
    prompt_caches.disk.wrote(100 * MIB)
    hold(prompt_caches, 0, 4000, "long")
    prompt_caches.running[1].slots.release("long")
    asyncio.run(prompt_caches.save(1, 1, someone_waits=False))
    assert saves == []
