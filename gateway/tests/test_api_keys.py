"""API keys: stored as prefix + digest, shown once, revocation final."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from gateway import crypto
from gateway.models import APIKey, LLMModel


def create_key(*args: str) -> str:
    out = io.StringIO()
    call_command("createapikey", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


@pytest.mark.django_db
def test_createapikey_prints_the_plaintext_last_and_stores_only_a_digest() -> None:
    plaintext = create_key("ci")
    key = APIKey.objects.get()
    assert plaintext.startswith(crypto.KEY_MARK)
    assert crypto.split_prefix(plaintext) == key.prefix
    assert crypto.matches(plaintext, key.hashed_key)
    stored = " ".join(str(value) for value in APIKey.objects.values().get().values())
    assert plaintext not in stored
    assert plaintext.split(".", 1)[1] not in stored


@pytest.mark.django_db
def test_createapikey_restricts_models() -> None:
    LLMModel.objects.create(model_id="a")
    LLMModel.objects.create(model_id="b")
    create_key("restricted", "--models", "a")
    assert list(APIKey.objects.get().allowed_models.values_list("model_id", flat=True)) == ["a"]


@pytest.mark.django_db
def test_createapikey_grants_the_scopes_asked_for() -> None:
    create_key("operator", "--scope-models", "--scope-logs")
    key = APIKey.objects.get()
    assert (key.scope_models, key.scope_logs, key.scope_monitoring) == (True, True, False)


@pytest.mark.django_db
def test_createapikey_refuses_unknown_models() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown model"):
        create_key("x", "--models", "nope")


def test_a_wrong_secret_with_a_real_prefix_does_not_match() -> None:
    plaintext, _, digest = crypto.new_key()
    assert crypto.matches(plaintext, digest)
    assert not crypto.matches(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"), digest)


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "", "pw"))
    return client


def test_the_admin_shows_a_new_key_once(admin_client: Client) -> None:
    response = admin_client.post("/admin/gateway/apikey/add/", {"name": "from admin"}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    key = APIKey.objects.get()
    plaintext = next(word for m in shown for word in m.split() if word.startswith(crypto.KEY_MARK))
    assert crypto.matches(plaintext, key.hashed_key)
    again = admin_client.get(f"/admin/gateway/apikey/{key.pk}/change/")
    assert plaintext not in again.content.decode()


def test_a_revoked_key_cannot_be_restored_in_the_admin(admin_client: Client) -> None:
    key, _ = APIKey.objects.create_key(name="k")
    admin_client.post("/admin/gateway/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked
    admin_client.post(f"/admin/gateway/apikey/{key.pk}/change/", {"name": "k", "revoked": ""})
    key.refresh_from_db()
    assert key.revoked
