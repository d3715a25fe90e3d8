"""Whether a GGUF has its own chat template, read from its header: the bundled base model has none."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from gateway import ggufinfo, llama, upstream

TEMPLATE = "{% for m in messages %}<|user|>{{ m.content }}<|end|>{% endfor %}<|assistant|>"


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    # Backends are cached by URL; a port a test found dead may serve something else in the next test.
    ggufinfo._checks.clear()
    yield
    ggufinfo._checks.clear()


def write_gguf(path: Path, template: str | None) -> Path:
    """A tiny GGUF whose metadata has arrays (strings, numbers, nested) before the template, as real ones do."""
    writer = GGUFWriter(path, arch="llama")
    writer.add_string("general.name", "tiny")
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "héllo", "x" * 300])
    writer.add_array("tokenizer.ggml.scores", [0.5, -1.0, 2.0])
    writer.add_array("test.nested", [[1, 2], [3, 4, 5]])
    writer.add_bool("test.flag", True)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_uint32("test.after", 7)
    writer.add_tensor("weight", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_it_finds_no_chat_template_in_the_bundled_model(llama_chat: Any) -> None:
    assert ggufinfo.has_chat_template(llama.model_path()) is False


def test_it_reads_the_chat_template_a_gguf_carries(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "instruct.gguf", TEMPLATE)
    assert ggufinfo.chat_template(path) == TEMPLATE
    assert ggufinfo.has_chat_template(path) is True
    # The same value gguf's own reader finds.
    assert GGUFReader(path).fields["tokenizer.chat_template"].contents() == TEMPLATE


def test_it_finds_none_in_a_gguf_without_one(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "base.gguf", None)
    assert "tokenizer.chat_template" not in GGUFReader(path).fields
    assert ggufinfo.chat_template(path) is None


def test_it_refuses_a_file_that_is_not_a_whole_gguf(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    empty = tmp_path / "empty.gguf"
    empty.touch()
    whole = write_gguf(tmp_path / "whole.gguf", TEMPLATE).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: whole.index("héllo".encode()) + 2])  # ends inside the tokens array
    for path in (text, empty, cut):
        with pytest.raises(ggufinfo.NotGGUF):
            ggufinfo.chat_template(path)
    assert ggufinfo.file_check(str(cut)).has_template is None
    assert ggufinfo.file_check(str(tmp_path / "missing.gguf")).has_template is None


@pytest.fixture
async def _close_backend_sessions() -> AsyncIterator[None]:
    yield
    await upstream.close_sessions()


async def test_it_asks_a_backend_for_its_gguf(llama_chat: Any, _close_backend_sessions: None) -> None:
    check = await ggufinfo.backend_check(llama_chat.url)
    assert (check.has_template, check.label) == (False, "no")
    assert str(llama.model_path()) in check.detail  # /props named the file, read here


async def test_it_says_unknown_for_a_backend_that_is_down(_close_backend_sessions: None) -> None:
    check = await ggufinfo.backend_check(f"http://127.0.0.1:{llama.free_port()}")
    assert (check.has_template, check.label, check.detail) == (None, "unknown", "backend unreachable")


def test_it_asks_backends_from_synchronous_code(llama_chat: Any) -> None:
    dead = f"http://127.0.0.1:{llama.free_port()}"
    checks = ggufinfo.backend_checks([(llama_chat.url, ""), (dead, "")])
    assert {url: check.has_template for (url, _), check in checks.items()} == {llama_chat.url: False, dead: None}
