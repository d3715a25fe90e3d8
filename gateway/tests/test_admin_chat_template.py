"""The admin's model list and backend inline say whether each backend's GGUF has its own chat template."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from gateway import ggufinfo
from gateway.llama import free_port, model_path
from gateway.models import LLMModel
from gateway.registry import register_model


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> Iterator[None]:
    # Admin pages link static files; the manifest exists only after collectstatic. Backends are cached by URL.
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # fmt: skip
    ggufinfo._checks.clear()
    yield
    ggufinfo._checks.clear()


def cell(html: str, model_id: str) -> str:
    """The "GGUF chat template" cell of a model's row in the change list."""
    row = re.search(rf"<tr>(?:(?!</tr>).)*>{re.escape(model_id)}</a>(?:(?!</tr>).)*</tr>", html, flags=re.DOTALL)
    assert row, f"no row for {model_id}"
    found = re.search(r'<td class="field-chat_template">([^<]*)</td>', row.group(0))
    assert found, f"no chat template column in the row of {model_id}"
    return found.group(1)


def test_it_lists_whether_each_models_gguf_has_a_chat_template(admin_client: Client, llama_chat: Any) -> None:
    register_model("gemma", [llama_chat.url], kind="chat")
    register_model("gone", [f"http://127.0.0.1:{free_port()}"], kind="chat")  # nothing listens there
    html = admin_client.get("/admin/gateway/llmmodel/").content.decode()
    assert "GGUF chat template" in html
    assert cell(html, "gemma") == "no"  # the bundled base model, read from the file /props names
    assert cell(html, "gone") == "unknown"


def test_it_shows_the_verdict_and_why_on_each_backend(admin_client: Client, llama_chat: Any) -> None:
    register_model("gemma", [llama_chat.url], kind="chat")
    model = LLMModel.objects.get(model_id="gemma")
    html = admin_client.get(f"/admin/gateway/llmmodel/{model.pk}/change/").content.decode()
    expected = f"no: {model_path()} has no tokenizer.chat_template: llama-server falls back to ChatML"
    assert expected in html
