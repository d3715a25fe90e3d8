"""The supervisor's side of prompt caches: the slot of each lease it grants, a saved cache restored into that slot
before the grant when one holds the start of the prompt, and every slot worth keeping saved before a planned stop.

The supervisor calls it from its one loop: `asked` when an acquire arrives, `granted` with the grant's reply (which
then names the slot, and says whether a cache was restored), `released` and `disconnected` as leases end, `ready`
and `exited` as processes come and go, `save` before it stops a ready process, `sweep` now and then. A restore or a
save that fails is logged and skipped: the request is read from scratch, the model stops all the same.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from gateway import llama, upstream
from gateway.lifecycle import kvcache
from gateway.lifecycle.config import Config, Setup
from gateway.lifecycle.runner import private_folder
from gateway.lifecycle.slots import Slots
from gateway.models import APIKey
from gateway.prefix import Boundary, from_message

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
CHARS_PER_TOKEN = 4  # what a prompt's characters are worth in tokens, for thresholds only (matching is by hash)
CALL_TIMEOUT = 10.0  # seconds a save or a restore may take
FIRST_WRITE_RATE = 100 * MIB  # bytes a second a save is assumed to write until one has been measured


def save_path(setup: Setup) -> str:
    """The folder a model's llama-server saves its slots to (--slot-save-path), or "" when its caches are not
    saved: none are (KV_CACHE_DISK_MB = 0), its build cannot, or its sliding-window layers would not reuse them."""
    if not settings.KV_CACHE_DISK_MB or setup.config is None or (setup.estimate and setup.estimate.windowed):
        return ""
    if "--slot-save-path" not in llama.supported_flags(str(llama.server_binary())):
        return ""
    return str(private_folder(_root() / kvcache.folder_name(setup.model_id)))


def _root() -> Path:
    return Path(settings.VAR_DIR) / "kv"


@dataclass
class Asked:
    backend: int
    boundaries: list[Boundary]
    owner: str
    holder: int


@dataclass
class Running:
    generation: int
    target: upstream.Target
    config: Config
    bytes_per_token: float
    slots: Slots
    saving: bool  # started with --slot-save-path


class PromptCaches:
    def __init__(self) -> None:
        self.disk = kvcache.DiskCaches(
            _root(), settings.KV_CACHE_DISK_MB * MIB, settings.KV_CACHE_WRITE_MB_PER_HOUR * MIB
        )
        self.running: dict[int, Running] = {}
        self.asked_for: dict[str, Asked] = {}  # lease → its request's prefixes, from its acquire to its release
        self.replies: dict[tuple[int, Any], str] = {}  # (holder, message id) of an acquire → its lease
        self.write_rate = float(FIRST_WRITE_RATE)

    # --- leases ---

    def asked(self, holder: int, message_id: Any, backend: int, lease: str, message: dict[str, Any]) -> None:
        owner = message.get("owner")
        self.asked_for[lease] = Asked(backend, from_message(message.get("prefix")), str(owner or "*"), holder)
        self.replies[(holder, message_id)] = lease

    def answering(self, holder: int, message_id: Any, body: dict[str, Any]) -> str | None:
        """The lease a grant answers (None for any other reply; a refusal forgets its request)."""
        lease = self.replies.pop((holder, message_id), None)
        if lease is not None and not (body.get("ok") and body.get("port")):
            self.asked_for.pop(lease, None)
            return None
        return lease

    async def granted(self, lease: str, body: dict[str, Any]) -> dict[str, Any]:
        """The grant's reply with its slot, after restoring a saved cache into it when one holds more of the
        prompt's start than any free slot does."""
        asked = self.asked_for.get(lease)
        running = self.running.get(asked.backend) if asked is not None else None
        if asked is None or running is None:
            return body
        index, live_chars = running.slots.choose(asked.boundaries)
        free = running.slots.slots[index].leases == 0
        running.slots.hold(index, lease, asked.boundaries, asked.owner)
        restored = False
        if free and running.saving and asked.boundaries:
            minimum = max(live_chars + 1, settings.KV_CACHE_MIN_TOKENS * CHARS_PER_TOKEN)
            found = self.disk.model(running.config).match(asked.boundaries, minimum)
            if found is not None and await self._owner_active(found[0].owner):
                restored = await self._restore(running, index, found[0])
        return {**body, "slot": index, "restored": restored}

    def released(self, lease: str) -> None:
        asked = self.asked_for.pop(lease, None)
        if asked is not None and (running := self.running.get(asked.backend)) is not None:
            running.slots.release(lease)

    def disconnected(self, holder: int) -> None:
        for lease in [lease for lease, asked in self.asked_for.items() if asked.holder == holder]:
            self.released(lease)
        for key in [key for key in self.replies if key[0] == holder]:
            del self.replies[key]

    # --- processes ---

    def ready(self, backend: int, generation: int, port: int, key: str, setup: Setup, address: str) -> None:
        config = setup.config
        assert config is not None
        per_token = (setup.estimate.kv / max(config.ctx_size, 1)) if setup.estimate else 0.0
        target = upstream.Target(f"http://{address}:{port}", key)
        saving = bool(save_path(setup))
        self.running[backend] = Running(generation, target, config, per_token, Slots.of(config.parallel), saving)

    def exited(self, backend: int) -> None:
        self.running.pop(backend, None)

    async def save(self, backend: int, generation: int, someone_waits: bool) -> None:
        """Save every slot of a ready process that holds a long enough prompt, before it is stopped. When a request
        waits for the memory the stop frees, a save estimated to take longer than KV_CACHE_SAVE_WAIT_MS is skipped;
        so is one past the hour's write allowance."""
        running = self.running.get(backend)
        if running is None or running.generation != generation or not running.saving:
            return
        caches = self.disk.model(running.config)
        started, saved = time.monotonic(), 0
        for index, slot in running.slots.held():
            tokens = slot.chars // CHARS_PER_TOKEN
            if slot.leases or tokens < settings.KV_CACHE_MIN_TOKENS:
                continue
            size = tokens * running.bytes_per_token
            if someone_waits and size / self.write_rate * 1000 > settings.KV_CACHE_SAVE_WAIT_MS:
                logger.info("prompt cache of %s slot %d not saved: a request waits for its memory",
                            running.config.model_id, index)  # fmt: skip
                continue
            if not self.disk.may_write(int(size)):
                logger.warning("prompt cache of %s slot %d not saved: KV_CACHE_WRITE_MB_PER_HOUR reached",
                               running.config.model_id, index)  # fmt: skip
                continue
            saved += await self._save(running, caches, index, slot.chain, slot.chars, slot.owner)
        self.disk.within_budget()
        if saved:
            logger.info("saving %d prompt caches of %s delayed its stop by %.0f ms", saved, running.config.model_id,
                        (time.monotonic() - started) * 1000)  # fmt: skip

    async def _save(
        self, running: Running, caches: kvcache.ModelCaches, index: int, chain: tuple[str, ...], chars: int,
        owner: str,
    ) -> int:  # fmt: skip
        """Save one slot; 1 if it was kept, else 0."""
        name = f"{secrets.token_hex(12)}.bin"
        try:
            tokens, size, milliseconds = await kvcache.save(running.target, index, name, CALL_TIMEOUT)
        except (upstream.UpstreamError, TimeoutError, OSError) as exc:
            logger.warning("prompt cache of %s slot %d not saved: %s", running.config.model_id, index, exc)
            (caches.folder / name).unlink(missing_ok=True)
            return 0
        self.disk.wrote(size)
        (caches.folder / name).chmod(0o600)
        if milliseconds > 0 and size:
            self.write_rate = size / (milliseconds / 1000)
        if tokens:
            running.bytes_per_token = size / tokens
        if tokens < settings.KV_CACHE_MIN_TOKENS:
            (caches.folder / name).unlink(missing_ok=True)
            return 0
        now = time.time()
        caches.add(kvcache.Saved(name, owner, list(chain), chars, tokens, size, now, now))
        logger.info("prompt cache of %s slot %d saved: %d tokens, %.1f MiB in %.0f ms", running.config.model_id,
                    index, tokens, size / MIB, milliseconds)  # fmt: skip
        return 1

    async def _restore(self, running: Running, index: int, saved: kvcache.Saved) -> bool:
        try:
            tokens, milliseconds = await kvcache.restore(running.target, index, saved.file, CALL_TIMEOUT)
        except (upstream.UpstreamError, TimeoutError, OSError) as exc:
            logger.warning("prompt cache %s of %s not restored: %s", saved.file, running.config.model_id, exc)
            return False
        saved.used_at = time.time()
        self.disk.model(running.config).write()
        logger.info("prompt cache of %s restored into slot %d: %d tokens in %.0f ms", running.config.model_id,
                    index, tokens, milliseconds)  # fmt: skip
        return tokens > 0

    async def _owner_active(self, owner: str) -> bool:
        if owner == "*":
            return True
        return owner in await asyncio.to_thread(_active_keys, {owner})

    # --- now and then ---

    async def sweep(self, configs: list[Config]) -> None:
        """Delete the caches of revoked, expired or deleted keys, of models this node no longer runs and of models
        whose GGUF or settings changed, and keep the rest within the disk budget."""
        for config in configs:
            self.disk.model(config)
        self.disk.forget_models({kvcache.folder_name(config.model_id) for config in configs})
        owners = {s.owner for caches in self.disk.models.values() for s in caches.entries.values()}
        active = await asyncio.to_thread(_active_keys, owners)
        if gone := self.disk.forget_owners(active):
            logger.info("%d saved prompt caches of revoked or deleted keys deleted", gone)
        self.disk.within_budget()

    def summary(self, model_id: str) -> dict[str, int]:
        return self.disk.summary(model_id)


def _active_keys(owners: set[str]) -> set[str]:
    """Which of these API key ids are of keys that still work."""
    ids = [int(owner) for owner in owners if owner.isdigit()]
    if not ids:
        return set()
    keys = APIKey.objects.filter(pk__in=ids, revoked=False).filter(
        Q(expires_at=None) | Q(expires_at__gt=timezone.now())
    )
    return {str(pk) for pk in keys.values_list("pk", flat=True)}
