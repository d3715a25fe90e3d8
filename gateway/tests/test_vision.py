"""Images: only for vision models, data: URIs checked, remote URLs only from allow-listed hosts.

No real vision model can be had here: a recording fake backend checks exactly what llama-server would receive.
"""

from __future__ import annotations

import base64

import pytest

from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import FakeLlama

CHAT = "/v1/chat/completions"
# A real 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def image_message(url: str) -> dict:
    return {
        "role": "user",
        "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}],
    }


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def vision(fake_llama: FakeLlama, transactional_db: None) -> FakeLlama:
    register_model("vision", [fake_llama.url], kind="vision")
    return fake_llama


def ask(live_gateway: str, api_key: str, model: str, url: str):  # type: ignore[no-untyped-def]
    return post(live_gateway, api_key, CHAT, {"model": model, "messages": [image_message(url)], "max_tokens": 4})


def test_it_passes_a_valid_image_to_the_backends_chat_endpoint(
    live_gateway: str, api_key: str, vision: FakeLlama
) -> None:
    uri = data_uri(PNG)
    assert ask(live_gateway, api_key, "vision", uri).status_code == 200
    sent = vision.received[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["messages"] == [image_message(uri)]


def test_it_refuses_images_for_a_text_model(live_gateway: str, api_key: str, chat_model: str) -> None:
    response = ask(live_gateway, api_key, chat_model, data_uri(PNG))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content[1].image_url"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("data:image/png;base64,%%%notbase64", "base64"),
        (data_uri(b"GIF89a" + b"\0" * 20), "not a valid image/png"),
        (data_uri(PNG, "image/svg+xml"), "Unsupported image type"),
        ("data:image/png,rawbytes", "base64"),
        (data_uri(PNG + b"\0" * 70_000), "larger than"),
        ("http://169.254.169.254/latest/meta-data", "not allowed"),
        ("https://evil.example.com/cat.png", "not allowed"),
        ("file:///etc/passwd", "data: URIs or http(s)"),
    ],
)
def test_it_refuses_unsafe_images(live_gateway: str, api_key: str, vision: FakeLlama, url: str, reason: str) -> None:
    response = ask(live_gateway, api_key, "vision", url)
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]
    assert vision.received == []


def test_it_passes_urls_from_allow_listed_hosts(live_gateway: str, api_key: str, vision: FakeLlama) -> None:
    # The live gateway runs with IMAGE_URL_ALLOWED_HOSTS=images.example.org
    url = "https://images.example.org/cat.png"
    assert ask(live_gateway, api_key, "vision", url).status_code == 200
    assert vision.received[0]["json"]["messages"][0]["content"][1]["image_url"]["url"] == url
