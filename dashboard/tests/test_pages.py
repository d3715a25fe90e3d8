"""What the pages contain: the models a user may chat with, no API key anywhere, only local assets."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from gateway.models import APIKey, LLMModel

PAGES = ["dashboard:overview", "dashboard:models", "dashboard:chat", "dashboard:logs", "dashboard:reference"]


def test_it_offers_enabled_chat_and_vision_models_only(client: Client, alice) -> None:
    LLMModel.objects.create(model_id="qwen-chat", kind="chat")
    LLMModel.objects.create(model_id="minicpm-v", kind="vision")
    LLMModel.objects.create(model_id="qwen-embed", kind="embedding")
    LLMModel.objects.create(model_id="retired", kind="chat", enabled=False)
    client.force_login(alice)
    html = client.get(reverse("dashboard:chat")).content.decode()
    options = re.findall(r'<option value="([^"]*)" data-kind="(\w+)"', html)
    assert options == [("minicpm-v", "vision"), ("qwen-chat", "chat")]


def test_it_escapes_model_ids(client: Client, alice) -> None:
    LLMModel.objects.create(model_id='x"><script>alert(1)</script>', kind="chat")
    client.force_login(alice)
    html = client.get(reverse("dashboard:chat")).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_it_never_puts_an_api_key_in_a_page(client: Client, alice) -> None:
    # Even a user who owns keys, including the dashboard's own, sees none of them in any page.
    _key, plaintext = APIKey.objects.create_key(name="alice's key", owner=alice)
    client.force_login(alice)
    for page in PAGES:
        html = client.get(reverse(page)).content.decode()
        assert plaintext not in html
        assert "sk-jg-" not in html.replace("sk-jg-...", "")


def test_it_loads_scripts_and_styles_from_this_server_only(client: Client, alice) -> None:
    client.force_login(alice)
    for page in PAGES:
        html = client.get(reverse(page)).content.decode()
        sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
        assert sources, page
        assert all(source.startswith("/static/") for source in sources), sources
        # Inline scripts would need a weaker Content-Security-Policy.
        assert not re.search(r"<script>(?!\s*</script>)", html)


def test_it_sends_a_content_security_policy_on_every_page(client: Client, alice) -> None:
    responses = [client.get(reverse("dashboard:login"))]
    client.force_login(alice)
    responses += [client.get(reverse(page)) for page in PAGES]
    for response in responses:
        policy = response["Content-Security-Policy"]
        assert "script-src 'self';" in policy
        assert "frame-ancestors 'none'" in policy
