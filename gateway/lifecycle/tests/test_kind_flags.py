"""A managed model's kind decides what its llama-server serves: --embeddings for an embedding model, --rerank for
a rerank model, neither for chat; and the operator's llama_args cannot decide it instead."""

from __future__ import annotations

import pytest

from gateway import llama
from gateway.lifecycle import flags
from gateway.lifecycle.config import Config


def config(kind: str) -> Config:
    return Config(1, "m", kind, "/models/m.gguf", "", 1024, 1, None, ("--pooling", "rank"), 0, 0.0, False)


def command(kind: str) -> list[str]:
    return config(kind).command(9001, "/run/m.key", str(llama.server_binary()))


@pytest.mark.parametrize(
    ("kind", "serving"),
    [("rerank", ["--rerank"]), ("embedding", ["--embeddings"]), ("chat", []), ("vision", [])],
)
def test_the_kind_puts_its_flag_on_the_command_line(kind: str, serving: list[str]) -> None:
    line = command(kind)

    assert [flag for flag in line if flag in ("--rerank", "--embeddings")] == serving
    assert line[line.index("--pooling") + 1] == "rank"  # the operator's tuning comes along


def test_a_rerank_model_is_not_generation_for_its_supervisor() -> None:
    # What the supervisor reads to decide that heat and power do not shed its requests (test_admission_by_endpoint
    # shows it on a real supervisor).
    generating = [kind for kind in ("chat", "vision", "embedding", "rerank") if not config(kind).embeddings]
    assert generating == ["chat", "vision"]


@pytest.mark.parametrize("flag", ["--rerank", "--reranking", "--embeddings"])
def test_llama_args_cannot_change_what_the_kind_decides(flag: str) -> None:
    with pytest.raises(flags.FlagError, match="the model's kind decides it"):
        flags.parse(flag)
