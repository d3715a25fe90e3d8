"""`manage.py addmodel` creates or updates a model and its backends, idempotently."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway.models import LLMModel

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
