"""The GGUF estimate against what llama-server itself allocates for the real small model (its log's buffer sizes)
and what its process uses; the formula for a 7B model whose figures llama.cpp is known to print; and the prompt
cache counted up to its limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import llama
from gateway.lifecycle import estimate, memory
from tests.live import ARTIFACTS
from tests.llama_server import LlamaServer

MIB = 1024 * 1024


@pytest.mark.parametrize(("ctx_size", "parallel"), [(2048, 2), (4096, 1)])
def test_the_estimate_matches_the_small_models_real_buffers(small_gguf: str, ctx_size: int, parallel: int) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"llama-estimate-{ctx_size}-{parallel}.log"
    log.unlink(missing_ok=True)
    server = LlamaServer(
        port=llama.free_port(), ctx_size=ctx_size, parallel=parallel, extra_args=["-lv", "4", "--fit", "off"]
    )
    server.start(log_file=log)
    try:
        rss = memory.resident(server.process.pid)  # type: ignore[union-attr]
    finally:
        server.stop()
    buffers = memory.parse_buffers(Path(log).read_text(errors="replace"))
    assert buffers is not None, f"llama-server logged no buffer sizes: see {log}"

    need = estimate.estimate(small_gguf, estimate.Options(ctx_size, parallel))

    print(f"ctx {ctx_size} x{parallel}: estimate {need.as_dict()}, buffers {buffers.by_buffer}, RSS {rss}")
    # The weights are the mapped model buffer; the KV cache is exactly what llama.cpp allocates.
    assert abs(need.weights - buffers.by_buffer["CPU_Mapped model"]) < 0.001 * need.weights
    assert abs(need.kv - buffers.by_kind["KV"]) < MIB
    # The whole estimate covers every buffer, and is within 15% of what the process really holds.
    assert need.total >= buffers.total
    assert rss is not None and abs(need.total - rss) < 0.15 * rss


def test_the_kv_cache_formula_gives_llama_cpps_figure_for_a_7b_model() -> None:
    """Qwen2.5-7B (28 layers, 4 KV heads of 128) at ctx 4096 in f16: llama.cpp prints a 224 MiB KV cache."""
    header = estimate.Header(
        "qwen2",
        {"qwen2.block_count": 28, "qwen2.attention.head_count": 28, "qwen2.attention.head_count_kv": 4,
         "qwen2.embedding_length": 3584, "qwen2.feed_forward_length": 18944},
        tensor_bytes=0,
    )  # fmt: skip

    assert estimate.kv_cache_bytes(header, estimate.Options(4096, 1)) == 224 * MIB
    assert estimate.kv_cache_bytes(header, estimate.Options(4096, 4)) == 224 * MIB  # slots share the context
    assert estimate.kv_cache_bytes(header, estimate.Options.from_flags(4096, 1, "-ctk q8_0 -ctv q8_0")) == 119 * MIB
    assert (
        estimate.kv_cache_bytes(header, estimate.Options.from_flags(4096, 1, "-ctk=q8_0 --cache_type_v q8_0"))
        == 119 * MIB
    )


def test_the_prompt_cache_is_counted_up_to_its_limit(small_gguf: str) -> None:
    without = estimate.estimate(small_gguf, estimate.Options(1024, 1))
    cached = estimate.estimate(small_gguf, estimate.Options.from_flags(1024, 1, "-ctk=f16", cache_ram_mb=256))

    assert cached.prompt_cache == 256 * MIB and without.prompt_cache == 0
    assert cached.total == without.total + 256 * MIB
    assert cached.as_dict() == {**without.as_dict(), "prompt_cache": 256 * MIB, "total": cached.total}
    assert cached.describe().endswith(" + prompt cache 256)") and "prompt cache" not in without.describe()


def test_refused_llama_args_make_no_estimate() -> None:
    with pytest.raises(estimate.EstimateError, match="llama_args: `--cache-ram` is not allowed here"):
        estimate.Options.from_flags(4096, 1, "--cache-ram 8192")
    with pytest.raises(estimate.EstimateError, match="llama_args: cannot be split into flags"):
        estimate.Options.from_flags(4096, 1, '--ctx-size "1024')
