"""The saved prompt caches on disk: within the disk budget (the least recently used go first), deleted when their
model's GGUF or settings change, when their key goes, or when a later turn of the same conversation supersedes them;
private (0700 folder, 0600 files) and an index that holds keyed hashes, never the prompt's text."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.lifecycle.config import Config
from gateway.lifecycle.kvcache import DiskCaches, Saved
from gateway.prefix import conversation

MIB = 1024 * 1024


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(100))
    return path


def config(gguf: Path, model_id: str = "model", ctx_size: int = 2048) -> Config:
    return Config(1, model_id, "chat", str(gguf), "", ctx_size, 1, None, ("--swa-full",), 0, 0.0, False)


def saved(disk: DiskCaches, config: Config, name: str, size_mb: int, used_at: float, owner: str = "7") -> Saved:
    """A file as llama-server would have written it, entered in the index."""
    caches = disk.model(config)
    (caches.folder / name).write_bytes(bytes(size_mb * MIB))
    entry = Saved(name, owner, [f"{name}-hash"], 4000, 1000, size_mb * MIB, used_at, used_at)
    caches.add(entry)
    return entry


def names(disk: DiskCaches, config: Config) -> list[str]:
    return sorted(path.name for path in disk.folder(config).glob("*.bin"))


def test_filling_past_the_budget_removes_the_least_recently_used(tmp_path: Path, gguf: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=10 * MIB, writes_per_hour=1000 * MIB)
    one, other = config(gguf), config(gguf, "other-model")
    saved(disk, one, "a.bin", 4, used_at=100)
    saved(disk, other, "b.bin", 4, used_at=300)
    saved(disk, one, "c.bin", 4, used_at=200)

    disk.within_budget()

    assert names(disk, one) == ["c.bin"]
    assert names(disk, other) == ["b.bin"]
    assert [e.file for e in disk.model(one).entries.values()] == ["c.bin"]


def test_a_changed_gguf_or_setting_invalidates_its_caches(tmp_path: Path, gguf: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=1000 * MIB)
    saved(disk, config(gguf), "a.bin", 1, used_at=100)
    assert disk.summary("model") == {"count": 1, "bytes": MIB}

    os.utime(gguf, ns=(1, 1))  # a new download of the weights
    assert disk.summary("model") == {"count": 1, "bytes": MIB}  # noticed when next looked at
    disk.model(config(gguf))
    assert names(disk, config(gguf)) == []
    assert disk.summary("model") == {"count": 0, "bytes": 0}

    saved(disk, config(gguf), "b.bin", 1, used_at=100)
    disk.model(replace(config(gguf), ctx_size=4096))  # another context size shapes another cache
    assert names(disk, config(gguf)) == []


def test_the_index_survives_a_restart_of_the_supervisor(tmp_path: Path, gguf: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=1000 * MIB)
    saved(disk, config(gguf), "a.bin", 1, used_at=100)
    (disk.folder(config(gguf)) / "half-written.bin").write_bytes(b"x")  # a save cut short

    again = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=1000 * MIB)

    assert [e.file for e in again.model(config(gguf)).entries.values()] == ["a.bin"]
    assert names(again, config(gguf)) == ["a.bin"]


def test_a_later_turn_supersedes_the_earlier_one(tmp_path: Path, gguf: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=1000 * MIB)
    caches = disk.model(config(gguf))
    first = saved(disk, config(gguf), "first.bin", 1, used_at=100)
    (caches.folder / "second.bin").write_bytes(b"x")
    caches.add(Saved("second.bin", "7", [*first.chain, "next-turn"], 5000, 1200, 1, 200, 200))
    assert names(disk, config(gguf)) == ["second.bin"]


def test_the_caches_of_keys_that_went_are_deleted(tmp_path: Path, gguf: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=1000 * MIB)
    saved(disk, config(gguf), "alice.bin", 1, used_at=100, owner="7")
    saved(disk, config(gguf), "bob.bin", 1, used_at=100, owner="8")
    saved(disk, config(gguf), "shared.bin", 1, used_at=100, owner="*")

    assert disk.forget_owners({"8"}) == 1

    assert names(disk, config(gguf)) == ["bob.bin", "shared.bin"]


def test_files_are_private_and_the_index_holds_no_text(tmp_path: Path, gguf: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=1000 * MIB)
    talk = conversation([{"role": "user", "content": "my secret plan"}], model="model", key_id=7)
    caches = disk.model(config(gguf))
    caches.add(Saved("a.bin", talk.owner, [b.hash for b in talk.boundaries], 20, 5, 1, 1, 1))
    index = caches.folder / "index.json"
    assert oct(caches.folder.stat().st_mode & 0o777) == "0o700"
    assert oct(index.stat().st_mode & 0o777) == "0o600"
    assert "secret" not in index.read_text()


def test_writes_are_capped_per_hour(tmp_path: Path) -> None:
    disk = DiskCaches(tmp_path / "kv", budget_bytes=100 * MIB, writes_per_hour=10 * MIB)
    assert disk.may_write(6 * MIB)
    disk.wrote(6 * MIB)
    assert not disk.may_write(6 * MIB)
    assert disk.may_write(4 * MIB)
