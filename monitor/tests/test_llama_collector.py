"""The llama-server collector reads slots busy/idle and token counters from a real llama-server."""

from __future__ import annotations

import httpx

from gateway import llama
from gateway.upstream import Target
from monitor.collectors.llama import LlamaCollector, PolledBackend
from monitor.operations.probe import parse_metrics
from tests.llama_server import LlamaServer


async def test_it_reads_idle_slots_and_token_counters(llama_chat: LlamaServer) -> None:
    collector = LlamaCollector(timeout=5)
    try:
        before = (await collector.collect([PolledBackend(Target(llama_chat.url), "gemma")]))["backends"][0]
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(f"{llama_chat.url}/completion", json={"prompt": "Hello", "n_predict": 4})
        generated = response.json()["tokens_predicted"]
        after = (await collector.collect([PolledBackend(Target(llama_chat.url), "gemma")]))["backends"][0]
    finally:
        await collector.aclose()
    assert before["ok"] is True and before["model"] == "gemma"
    assert (before["slots_busy"], before["slots_idle"]) == (0, 2)
    assert after["predicted_tokens_total"] - before["predicted_tokens_total"] == generated
    assert after["prompt_tokens_total"] > before["prompt_tokens_total"]


async def test_it_counts_a_slot_busy_while_it_generates(llama_chat: LlamaServer) -> None:
    collector = LlamaCollector(timeout=5)
    body = {"prompt": "Once upon a time", "n_predict": 400, "stream": True, "ignore_eos": True}
    try:
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream("POST", f"{llama_chat.url}/completion", json=body) as stream,
        ):
            # The first streamed token means the slot is processing; 400 tokens keep it busy well past the poll.
            async for chunk in stream.aiter_lines():
                if chunk.startswith("data:"):
                    break
            backend = (await collector.collect([PolledBackend(Target(llama_chat.url))]))["backends"][0]
    finally:
        await collector.aclose()
    assert (backend["slots_busy"], backend["slots_idle"]) == (1, 1)


async def test_it_marks_an_unreachable_backend_down() -> None:
    collector = LlamaCollector(timeout=1)
    try:
        backend = (await collector.collect([PolledBackend(Target(f"http://127.0.0.1:{llama.free_port()}"))]))[
            "backends"
        ][0]
    finally:
        await collector.aclose()
    assert backend["ok"] is False
    assert "ClientConnectorError" in backend["error"]
    assert "slots_busy" not in backend


def test_it_reads_only_the_counters_it_knows() -> None:
    text = (
        "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
        "# TYPE llamacpp:prompt_tokens_total counter\n"
        "llamacpp:prompt_tokens_total 120\n"
        "llamacpp:tokens_predicted_total 64\n"
        "llamacpp:kv_cache_usage_ratio 0.25\n"
        "llamacpp:requests_deferred 2\n"
    )
    assert parse_metrics(text) == {
        "prompt_tokens_total": 120.0,
        "predicted_tokens_total": 64.0,
        "requests_deferred": 2.0,
    }
