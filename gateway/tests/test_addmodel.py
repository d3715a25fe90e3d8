"""`manage.py addmodel` creates or updates a model and its backends, idempotently."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway.models import Backend, LLMModel
from gateway.node.identity import node_name

pytestmark = pytest.mark.django_db


def addmodel(*args: str) -> str:
    out = io.StringIO()
    call_command("addmodel", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_model_with_its_backends() -> None:
    output = addmodel("qwen", "--backend", "http://127.0.0.1:8082", "--backend", "http://10.0.0.2:8082/",
                      "--prompt-format", "chatml", "--alias", "qwen2.5")  # fmt: skip
    assert "created model qwen" in output
    model = LLMModel.objects.get()
    assert model.prompt_format == "chatml"
    assert model.aliases == ["qwen2.5"]
    assert sorted(model.backends.values_list("base_url", flat=True)) == [
        "http://10.0.0.2:8082",
        "http://127.0.0.1:8082",
    ]


def test_running_it_again_updates_instead_of_duplicating() -> None:
    addmodel("qwen", "--backend", "http://127.0.0.1:8082")
    output = addmodel("qwen", "--backend", "http://127.0.0.1:9999", "--kind", "vision")
    assert "updated model qwen" in output
    model = LLMModel.objects.get()
    assert model.kind == "vision"
    assert list(model.backends.values_list("base_url", flat=True)) == ["http://127.0.0.1:9999"]


def test_it_refuses_a_backend_that_is_not_a_url() -> None:
    with pytest.raises(CommandError, match="not an http"):
        addmodel("qwen", "--backend", "localhost:8082")


def test_it_refuses_defaults_that_are_not_an_object() -> None:
    with pytest.raises(CommandError, match="JSON object"):
        addmodel("qwen", "--backend", "http://127.0.0.1:8082", "--defaults", "[1]")


def test_it_creates_a_managed_model_on_this_node(tmp_path: Path) -> None:
    gguf = tmp_path / "qwen.gguf"
    gguf.write_bytes(b"GGUF")
    output = addmodel("qwen", "--gguf", str(gguf), "--ctx-size", "8192", "--parallel", "1", "--gpu-layers", "99",
                      "--ttl", "300", "--pin", "--llama-args", "--flash-attn on")  # fmt: skip
    assert "created model qwen (chat) with 1 backend(s) (managed)" in output
    backend = Backend.objects.get()
    assert (backend.managed, backend.base_url, backend.node) == (True, "", node_name())
    assert (backend.gguf_path, backend.ctx_size, backend.parallel, backend.gpu_layers) == (str(gguf), 8192, 1, 99)
    assert (backend.idle_ttl, backend.pinned, backend.llama_args) == (300, True, "--flash-attn on")


def test_running_it_again_updates_the_managed_backend_and_can_add_an_external_one(tmp_path: Path) -> None:
    gguf = tmp_path / "qwen.gguf"
    gguf.write_bytes(b"GGUF")
    addmodel("qwen", "--gguf", str(gguf))
    first = Backend.objects.get()
    addmodel("qwen", "--gguf", str(gguf), "--ctx-size", "2048", "--backend", "http://10.0.0.2:8082")
    assert Backend.objects.get(managed=True).pk == first.pk  # its state and measurements stay with it
    assert Backend.objects.get(managed=True).ctx_size == 2048
    assert list(Backend.objects.filter(managed=False).values_list("base_url", flat=True)) == ["http://10.0.0.2:8082"]
    addmodel("qwen", "--backend", "http://10.0.0.2:8082")
    assert not Backend.objects.filter(managed=True).exists()


def test_it_needs_a_backend_or_a_gguf_that_exists(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--backend URL"):
        addmodel("qwen")
    with pytest.raises(CommandError, match="is not a file"):
        addmodel("qwen", "--gguf", str(tmp_path / "missing.gguf"))


def test_it_refuses_llama_args_the_admin_form_refuses_and_writes_nothing(tmp_path: Path) -> None:
    gguf = tmp_path / "qwen.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(CommandError, match="--llama-args: cannot be split into flags: No closing quotation"):
        addmodel("qwen", "--gguf", str(gguf), "--llama-args", '--ctx-size "1024')
    with pytest.raises(CommandError, match="--llama-args: `--host` is not allowed here"):
        addmodel("qwen", "--gguf", str(gguf), "--llama-args", "--host 0.0.0.0 --path /etc/jetson-gateway")
    with pytest.raises(CommandError, match="--llama-args: `-c` is not allowed here: use the ctx_size field"):
        addmodel("qwen", "--gguf", str(gguf), "--llama-args", "-c 8192")
    assert not LLMModel.objects.exists()


def test_it_sets_the_prompt_cache_or_leaves_it_to_the_setting_or_the_kind(tmp_path: Path, settings: Any) -> None:
    gguf = tmp_path / "qwen.gguf"
    gguf.write_bytes(b"GGUF")
    settings.MODEL_CACHE_RAM_MB = 128
    addmodel("qwen", "--gguf", str(gguf))
    assert (Backend.objects.get().cache_ram_mb, Backend.objects.get().prompt_cache_mb) == (None, 128)
    addmodel("qwen", "--gguf", str(gguf), "--cache-ram-mb", "0")
    assert (Backend.objects.get().cache_ram_mb, Backend.objects.get().prompt_cache_mb) == (0, 0)
    with pytest.raises(CommandError, match="--cache-ram-mb must not be negative"):
        addmodel("qwen", "--gguf", str(gguf), "--cache-ram-mb", "-1")
    addmodel("qwen", "--gguf", str(gguf), "--kind", "embedding")  # llama-server caches only completions' prompts
    assert (Backend.objects.get().cache_ram_mb, Backend.objects.get().prompt_cache_mb) == (None, 0)


def test_it_registers_a_rerank_model_and_one_that_accepts_audio() -> None:
    ranker = addmodel("bge-reranker", "--kind", "rerank", "--backend", "http://127.0.0.1:8086")
    hearing = addmodel("voxtral", "--audio", "--backend", "http://127.0.0.1:8087")

    assert "created model bge-reranker (rerank) with 1 backend(s)" in ranker
    assert "created model voxtral (chat, accepts audio) with 1 backend(s)" in hearing
    assert LLMModel.objects.get(model_id="voxtral").audio
    addmodel("voxtral", "--backend", "http://127.0.0.1:8087")  # idempotent: without --audio, it no longer hears
    assert not LLMModel.objects.get(model_id="voxtral").audio


def test_only_a_chat_or_vision_model_accepts_audio() -> None:
    with pytest.raises(CommandError, match="--audio: only a chat or vision model can accept audio, not this rerank"):
        addmodel("bge-reranker", "--kind", "rerank", "--audio", "--backend", "http://127.0.0.1:8086")
    assert not LLMModel.objects.exists()
