"""Which models' llama-servers are started with --slot-save-path: not when saving is off (KV_CACHE_DISK_MB=0), not
with a build that cannot save slots, and not for a sliding-window model without --swa-full (llama.cpp would not reuse
its restored cache); the others save to a folder only the service user may enter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway import llama
from gateway.lifecycle import estimate, promptcache
from gateway.lifecycle.config import Config, Setup
from gateway.llama import model_path


def small_setup(args: tuple[str, ...]) -> Setup:
    gguf = str(model_path())  # Gemma 3: five of every six layers keep a sliding window
    config = Config(1, "gemma", "chat", gguf, "", 2048, 1, None, args, 0, 0.0, False)
    return Setup(1, "gemma", config, estimate.estimate(gguf, config.options()))


@pytest.fixture
def var_dir(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path
    settings.KV_CACHE_DISK_MB = 100
    return tmp_path


def test_a_sliding_window_model_saves_only_with_swa_full(var_dir: Path) -> None:
    assert promptcache.save_path(small_setup(())) == ""
    folder = Path(promptcache.save_path(small_setup(("--swa-full",))))
    assert folder == var_dir / "kv" / "gemma"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_nothing_saves_when_saving_is_off(var_dir: Path, settings: Any) -> None:
    settings.KV_CACHE_DISK_MB = 0
    assert promptcache.save_path(small_setup(("--swa-full",))) == ""


def test_a_build_without_slot_saving_saves_nothing(var_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    known = llama.supported_flags(str(llama.server_binary()))
    monkeypatch.setattr(llama, "supported_flags", lambda binary: known - {"--slot-save-path"})
    assert promptcache.save_path(small_setup(("--swa-full",))) == ""


def test_the_command_line_carries_the_folder(var_dir: Path) -> None:
    setup = small_setup(("--swa-full",))
    assert setup.config is not None
    binary = str(llama.server_binary())
    command = setup.config.command(8080, "/run/key", binary, promptcache.save_path(setup))
    assert command[command.index("--slot-save-path") + 1] == str(var_dir / "kv" / "gemma")
    assert "--slot-save-path" not in setup.config.command(8080, "/run/key", binary, "")
