"""Heat and power shed generation only: when the board is hot, reranking is served as embeddings are (by a managed
rerank model, or an external llama-server on this node), while a transcription, which generates, is refused like
chat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from gateway.lifecycle.tests.conftest import SMALL, RunningSampler, RunningSupervisor
from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import FakeLlama

LIMITS = {"ADMISSION_TEMP_SOFT_C": 70, "ADMISSION_TEMP_HARD_C": 85, "ADMISSION_RECOVER_C": 5}


def rerank(live_gateway: str, api_key: str, model: str) -> httpx.Response:
    return post(live_gateway, api_key, "/v1/rerank", {"model": model, "query": "hot", "documents": ["warm", "cold"]})


def transcribe(live_gateway: str, api_key: str) -> httpx.Response:
    return httpx.post(f"{live_gateway}/v1/audio/transcriptions", headers={"Authorization": f"Bearer {api_key}"},
                      data={"model": "hearing"}, files={"file": ("a.wav", b"RIFF", "audio/wav")}, timeout=60)  # fmt: skip


def test_a_hot_board_serves_reranking_and_sheds_transcriptions(
    live_gateway: str, api_key: str, small_gguf: str, llama_rerank: Any, fake_llama: FakeLlama,
    supervisor_factory: Callable[..., RunningSupervisor], sampler_factory: Callable[..., RunningSampler],
) -> None:  # fmt: skip
    register_model("managed-ranker", [], kind="rerank", managed={"gguf_path": small_gguf, **SMALL})
    register_model("external-ranker", [llama_rerank.url], kind="rerank")  # http://127.0.0.1:…: on this node
    register_model("hearing", [fake_llama.url], kind="chat", audio=True)  # on this node too
    supervisor = supervisor_factory(MODEL_MEMORY_BUDGET_MB=2000)
    node = sampler_factory(**LIMITS)

    node.set_temperature(90)
    node.wait_for_admission("hard")

    managed = rerank(live_gateway, api_key, "managed-ranker")  # loaded and served while hot
    assert managed.status_code == 200, managed.text  # llama-server serves /v1/rerank only when started with --rerank
    assert ["--rerank" in process.cmdline() for process in supervisor.llama_servers()] == [True]
    assert rerank(live_gateway, api_key, "external-ranker").status_code == 200
    shed = transcribe(live_gateway, api_key)
    assert shed.status_code == 503, shed.text
    assert shed.json()["error"]["code"] == "device_overheated"
    assert fake_llama.received == []

    node.set_temperature(45)
    node.wait_for_admission("normal")
    assert transcribe(live_gateway, api_key).status_code == 200
