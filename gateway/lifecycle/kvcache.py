"""Prompt caches saved to disk, so that a conversation survives its model's stop.

When the supervisor stops a model for a planned reason (idle, evicted, unloaded, restarted, drained), it has
llama-server write each slot that holds a long enough prompt to a file (`POST /slots/{id}?action=save`); when a
request's prompt starts with a saved one, the file is read back into a free slot before the request is granted
(`action=restore`), and the request goes to that slot (`id_slot`). The match is by the conversation's prefix hashes
(gateway.prefix): no tokenizing on the hot path.

Files live in VAR_DIR/kv/<model>/ (0700; files 0600: they hold prompt content), with an index of what each can
serve: the prefix hashes (keyed, not text), the API key they belong to, tokens, bytes and when last used. The index
also names the model's identity (its GGUF's path, size and time, the settings that shape its cache): a model whose
identity changed has its files deleted. All of a node's files share one disk budget (KV_CACHE_DISK_MB, the least
recently used go first) and one write allowance per hour (KV_CACHE_WRITE_MB_PER_HOUR: flash storage wears).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway import upstream
from gateway.lifecycle.config import Config
from gateway.prefix import Boundary, matched

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
INDEX = "index.json"
HOUR = 3600.0


@dataclass
class Saved:
    """One slot's cache on disk."""

    file: str
    owner: str  # the API key's id, or "*" when caches are shared
    chain: list[str]  # the prefix hashes of the prompt it holds, shortest first
    chars: int
    tokens: int
    bytes: int
    saved_at: float  # wall clock
    used_at: float


def identity(config: Config) -> str:
    """What a saved cache is only valid for: the same weights read with the same cache settings."""
    parts: list[Any] = [config.ctx_size, config.parallel, config.args, config.kind]
    for path in (config.gguf, config.mmproj):
        if path:
            with contextlib.suppress(OSError):
                stat = os.stat(path)
                parts += [os.path.realpath(path), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def folder_name(model_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)[:100] or "_"


class ModelCaches:
    """One model's folder: its files and their index."""

    def __init__(self, folder: Path, identity: str) -> None:
        self.folder = folder
        self.identity = identity
        self.entries: dict[str, Saved] = {}
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        try:
            index = json.loads((folder / INDEX).read_text())
            if index.get("identity") == identity:
                self.entries = {e["file"]: Saved(**e) for e in index.get("entries", [])}
            else:
                logger.info("the saved prompt caches in %s were for another GGUF or settings: deleted", folder)
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.warning("the index of %s is unreadable: its caches are deleted", folder)
        for path in folder.iterdir():  # files no entry names (an interrupted save, an old identity)
            if path.name != INDEX and path.name not in self.entries:
                path.unlink(missing_ok=True)
        self.entries = {name: e for name, e in self.entries.items() if (folder / name).is_file()}
        self.write()

    def match(self, boundaries: list[Boundary], min_chars: int) -> tuple[Saved, int] | None:
        """The saved cache that holds the longest prefix of the prompt, and that prefix's length in characters (at
        least `min_chars`)."""
        best: tuple[Saved, int] | None = None
        for saved in self.entries.values():
            hit = matched(saved.chain, boundaries)
            if hit is not None and hit.chars >= min_chars and (best is None or hit.chars > best[1]):
                best = (saved, hit.chars)
        return best

    def add(self, saved: Saved) -> None:
        """A new file; files it supersedes (an earlier turn of the same conversation) are deleted."""
        covered = set(saved.chain)
        for old in [e for e in self.entries.values() if e.chain and e.chain[-1] in covered]:
            self.remove(old)
        self.entries[saved.file] = saved
        self.write()

    def remove(self, saved: Saved) -> None:
        self.entries.pop(saved.file, None)
        (self.folder / saved.file).unlink(missing_ok=True)

    def write(self) -> None:
        data = {"identity": self.identity, "entries": [asdict(e) for e in self.entries.values()]}
        temporary = self.folder / f".{INDEX}.{secrets.token_hex(4)}"
        temporary.write_text(json.dumps(data))
        temporary.chmod(0o600)
        temporary.replace(self.folder / INDEX)

    def size(self) -> int:
        return sum(e.bytes for e in self.entries.values())


class DiskCaches:
    """A node's saved prompt caches: one folder per model, one disk budget, one write allowance per hour."""

    def __init__(self, root: Path, budget_bytes: int, writes_per_hour: int) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self.writes_per_hour = writes_per_hour
        self.models: dict[str, ModelCaches] = {}
        self.writes: deque[tuple[float, int]] = deque()  # (monotonic time, bytes) of the last hour's saves
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)

    def model(self, config: Config) -> ModelCaches:
        """The model's caches, for its current identity (changed weights or settings delete the old ones)."""
        name = folder_name(config.model_id)
        now_identity = identity(config)
        caches = self.models.get(name)
        if caches is None or caches.identity != now_identity:
            caches = self.models[name] = ModelCaches(self.root / name, now_identity)
        return caches

    def folder(self, config: Config) -> Path:
        return self.root / folder_name(config.model_id)

    def written_this_hour(self) -> int:
        now = time.monotonic()
        while self.writes and now - self.writes[0][0] > HOUR:
            self.writes.popleft()
        return sum(size for _, size in self.writes)

    def may_write(self, size: int) -> bool:
        return self.written_this_hour() + size <= self.writes_per_hour

    def wrote(self, size: int) -> None:
        self.writes.append((time.monotonic(), size))

    def within_budget(self) -> None:
        """Delete the least recently used files until all of the node's fit the disk budget."""
        everything = [(saved, caches) for caches in self.models.values() for saved in caches.entries.values()]
        total = sum(saved.bytes for saved, _ in everything)
        for saved, caches in sorted(everything, key=lambda pair: pair[0].used_at):
            if total <= self.budget_bytes:
                break
            caches.remove(saved)
            total -= saved.bytes
            logger.info("prompt cache %s deleted: the disk budget is %d MiB", saved.file, self.budget_bytes // MIB)
        for caches in self.models.values():
            caches.write()

    def forget_owners(self, active: set[str]) -> int:
        """Delete the caches of API keys that are no longer active (revoked or deleted); how many went."""
        gone = 0
        for caches in self.models.values():
            for saved in [s for s in caches.entries.values() if s.owner != "*" and s.owner not in active]:
                caches.remove(saved)
                gone += 1
            if gone:
                caches.write()
        return gone

    def forget_models(self, kept: set[str]) -> None:
        """Delete the folders of models this node no longer runs."""
        for path in self.root.iterdir():
            if path.is_dir() and path.name not in kept:
                shutil.rmtree(path, ignore_errors=True)
                self.models.pop(path.name, None)

    def summary(self, model_id: str) -> dict[str, int]:
        caches = self.models.get(folder_name(model_id))
        if caches is None:
            return {"count": 0, "bytes": 0}
        return {"count": len(caches.entries), "bytes": caches.size()}


async def save(target: upstream.Target, slot: int, filename: str, timeout: float) -> tuple[int, int, float]:
    """Have llama-server write a slot's cache to a file in its --slot-save-path: (tokens, bytes, milliseconds)."""
    answer = await upstream.post_json(target, f"/slots/{slot}?action=save", {"filename": filename}, timeout)
    return int(answer.get("n_saved") or 0), int(answer.get("n_written") or 0), _ms(answer, "save_ms")


async def restore(target: upstream.Target, slot: int, filename: str, timeout: float) -> tuple[int, float]:
    """Have llama-server read a saved cache into a slot: (tokens, milliseconds)."""
    answer = await upstream.post_json(target, f"/slots/{slot}?action=restore", {"filename": filename}, timeout)
    return int(answer.get("n_restored") or 0), _ms(answer, "restore_ms")


def _ms(answer: dict[str, Any], name: str) -> float:
    timings = answer.get("timings")
    return float(timings.get(name) or 0.0) if isinstance(timings, dict) else 0.0
