"""The admin: managed fields editable on a model's page, its kind and whether it accepts audio, its state in the list,
load / unload actions."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import Backend, LLMModel

pytestmark = pytest.mark.usefixtures("_plain_static")


@pytest.fixture
def _plain_static(settings: object) -> None:
    # Admin pages link static files; the manifest exists only after collectstatic.
    settings.STORAGES = {  # type: ignore[attr-defined]
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def admin_client(transactional_db: None) -> Client:
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", "", "x"))
    return browser


# The model's own fields in the admin's add form.
MODEL_FORM = {"model_id": "qwen", "aliases": "[]", "kind": "chat", "prompt_format": "server", "enabled": "on",
              "owned_by": "local", "default_params": "{}", "request_timeout": "120"}  # fmt: skip


def inline(prefix: str, **fields: object) -> dict[str, object]:
    data = {f"{prefix}-TOTAL_FORMS": "1", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000"}  # fmt: skip
    defaults = {"weight": 1, "max_concurrent": 0, "ctx_size": 4096, "parallel": 2, "enabled": "on"}
    data.update({f"{prefix}-0-{name}": value for name, value in {**defaults, **fields}.items()})
    return data


def test_a_managed_model_is_created_in_the_admin_without_a_url(admin_client: Client, small_gguf: str) -> None:
    backend = inline("backends", managed="on", gguf_path=small_gguf, ctx_size=1024, idle_ttl=60, pinned="on")

    response = admin_client.post("/admin/gateway/llmmodel/add/", {**MODEL_FORM, **backend})

    assert response.status_code == 302, response.content.decode()[:2000]
    backend = Backend.objects.get()
    assert (backend.managed, backend.base_url, backend.ctx_size, backend.idle_ttl, backend.pinned) == (
        True, "", 1024, 60, True,
    )  # fmt: skip
    assert backend.node  # this machine's node


def test_a_managed_backend_needs_its_gguf_and_an_external_one_its_url(admin_client: Client) -> None:
    managed = admin_client.post("/admin/gateway/llmmodel/add/", {**MODEL_FORM, **inline("backends", managed="on")})
    external = admin_client.post("/admin/gateway/llmmodel/add/", {**MODEL_FORM, **inline("backends", api_key="secret")})

    assert "A managed backend needs its GGUF file." in managed.content.decode()
    assert "An external backend needs its URL" in external.content.decode()
    assert not LLMModel.objects.exists()


def test_a_managed_backend_takes_no_key_its_supervisor_gives_it_one(admin_client: Client, small_gguf: str) -> None:
    backend = inline("backends", managed="on", gguf_path=small_gguf, api_key="typed-by-an-operator")

    response = admin_client.post("/admin/gateway/llmmodel/add/", {**MODEL_FORM, **backend})

    assert "A managed backend&#x27;s key is its supervisor&#x27;s" in response.content.decode()
    assert not LLMModel.objects.exists()


def test_llama_args_that_are_not_tuning_flags_are_refused_on_the_field(admin_client: Client, small_gguf: str) -> None:
    for llama_args, message in [
        ('--ctx-size "1024', "cannot be split into flags: No closing quotation"),
        ("--host 0.0.0.0 --path /etc/jetson-gateway", "`--host` is not allowed here: where it listens"),
        ("--threads --api-key secret", "`--threads` needs a value, not `--api-key`"),
    ]:
        backend = inline("backends", managed="on", gguf_path=small_gguf, llama_args=llama_args)
        response = admin_client.post("/admin/gateway/llmmodel/add/", {**MODEL_FORM, **backend})

        [errors] = response.context["inline_admin_formsets"][0].formset.errors
        assert list(errors) == ["llama_args"] and message in errors["llama_args"][0]
        assert message in html.unescape(response.content.decode())
    assert not LLMModel.objects.exists()

    tuning = inline("backends", managed="on", gguf_path=small_gguf, llama_args="-t 4 --flash-attn=on", cache_ram_mb=0)
    assert admin_client.post("/admin/gateway/llmmodel/add/", {**MODEL_FORM, **tuning}).status_code == 302
    assert Backend.objects.filter(llama_args="-t 4 --flash-attn=on", cache_ram_mb=0).exists()


def test_a_model_is_a_reranker_or_accepts_audio_only_if_it_generates(admin_client: Client) -> None:
    external = inline("backends", base_url="http://127.0.0.1:8087")
    add = "/admin/gateway/llmmodel/add/"

    hearing = admin_client.post(add, {**MODEL_FORM, "model_id": "voxtral", "audio": "on", **external})
    ranker = admin_client.post(add, {**MODEL_FORM, "model_id": "bge-reranker", "kind": "rerank", **external})
    deaf = admin_client.post(add, {**MODEL_FORM, "model_id": "embed", "kind": "embedding", "audio": "on", **external})

    assert (hearing.status_code, ranker.status_code) == (302, 302)
    assert list(LLMModel.objects.values_list("model_id", "kind", "audio")) == [
        ("bge-reranker", "rerank", False), ("voxtral", "chat", True),
    ]  # fmt: skip
    assert "Only a chat or vision model can accept audio, not this embedding model." in html.unescape(
        deaf.content.decode()
    )


@override_settings(MODEL_IDLE_TTL=600)
def test_the_list_shows_the_state_and_the_actions_load_and_unload(
    admin_client: Client, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a = LLMModel.objects.get(model_id="model-a")
    loaded = admin_client.post(
        "/admin/gateway/llmmodel/", {"action": "load", "_selected_action": [model_a.pk]}, follow=True
    )
    assert "to load model-a." in loaded.content.decode()
    supervisor.wait_for("model-a", lambda s: s["state"] == "ready", 60, "ready")
    supervisor.wait_for("model-a", lambda s: s["memory"]["measured_bytes"], 5, "measured")

    listing = admin_client.get("/admin/gateway/llmmodel/").content.decode()
    assert "ready on " in listing and " MiB)" in listing

    admin_client.post("/admin/gateway/llmmodel/", {"action": "unload", "_selected_action": [model_a.pk]})
    supervisor.wait_for("model-a", lambda s: s["state"] == "stopped", 30, "stopped")
