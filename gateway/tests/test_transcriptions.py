"""POST /v1/audio/transcriptions: OpenAI's multipart upload, size-limited, passed on as multipart to llama-server
for a model that accepts audio, answered as JSON or plain text, its tokens logged.

No audio model ships on PyPI: a recording fake backend answers in llama-server's shape (what a real one without
audio answers is in test_endpoint_not_supported).
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from gateway.registry import register_model
from gateway.tests.test_request_logging import row_for
from tests.answers import answer_schema, conforms
from tests.fake_llama import FakeLlama

TRANSCRIBE = "/v1/audio/transcriptions"
CLIP = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4  # the bytes are all the fake reads


@pytest.fixture
def hearing(fake_llama: FakeLlama, transactional_db: None) -> FakeLlama:
    register_model("hearing", [fake_llama.url], kind="chat", audio=True, aliases=["whisper-1"])
    return fake_llama


def upload(live_gateway: str, key: str, data: dict[str, str], clip: bytes = CLIP, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{live_gateway}{TRANSCRIBE}", headers={"Authorization": f"Bearer {key}"}, data=data,
        files={"file": ("clip.wav", clip, "audio/wav")}, timeout=60, **extra,
    )  # fmt: skip


def test_it_passes_the_upload_on_as_multipart(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    fields = {"model": "whisper-1", "language": "fr", "prompt": "Noms: Zoé", "temperature": "0"}

    response = upload(live_gateway, api_key, fields)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["text"] == f"heard {len(CLIP)} bytes"
    assert conforms({"text": answer["text"]}, answer_schema(TRANSCRIBE, "post"))
    assert "model" not in answer  # llama-server names none: nor its GGUF
    [sent] = hearing.received
    assert sent["form"] == {"model": "hearing", "response_format": "json", "language": "fr", "prompt": "Noms: Zoé",
                            "temperature": "0.0"}  # fmt: skip
    assert sent["files"] == {"file": ("clip.wav", "audio/wav", CLIP)}
    assert "authorization" not in {name.lower() for name in sent["headers"]}  # the client's key stays here


def test_the_sdk_transcribes_in_json_and_in_plain_text(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key, max_retries=0)

    as_json = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", CLIP))
    as_text = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", CLIP), response_format="text")

    assert as_json.text == as_text.strip() == f"heard {len(CLIP)} bytes"
    assert [sent["form"]["response_format"] for sent in hearing.received] == ["json", "json"]  # the gateway's text


def test_plain_text_is_text_plain(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    response = upload(live_gateway, api_key, {"model": "hearing", "response_format": "text"})

    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == f"heard {len(CLIP)} bytes"


def test_it_logs_one_row_with_its_tokens(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    response = upload(live_gateway, api_key, {"model": "hearing"})

    row = row_for(response)
    assert (row.status, row.endpoint, row.model_used, row.backend) == (200, TRANSCRIBE, "hearing", hearing.url)
    assert (row.prompt_tokens, row.completion_tokens) == (20, hearing.tokens)  # the answer's input and output tokens


def test_an_audio_file_over_max_audio_bytes_gets_413(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    # The live gateway runs with MAX_AUDIO_BYTES=65536 (and a body limit of 1 MiB).
    response = upload(live_gateway, api_key, {"model": "hearing"}, clip=b"\0" * (2**16 + 1))

    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "file", "audio_too_large")
    assert "65536 bytes" in error["message"]
    assert hearing.received == []
    assert upload(live_gateway, api_key, {"model": "hearing"}, clip=b"\0" * 2**16).status_code == 200


def test_a_body_over_max_request_bytes_gets_413(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    response = upload(live_gateway, api_key, {"model": "hearing", "prompt": "x" * 2**20})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("fields", "files", "param"),
    [
        ({"model": "hearing", "response_format": "verbose_json"}, True, "response_format"),
        ({"model": "hearing", "response_format": "srt"}, True, "response_format"),
        ({"model": "hearing", "temperature": "warm"}, True, "temperature"),
        ({"model": "hearing", "temperature": "1.5"}, True, "temperature"),
        ({"model": "hearing", "stream": "true"}, True, "stream"),
        ({"model": "hearing"}, False, "file"),
        ({"model": "hearing", "file": "not a file"}, False, "file"),
        ({"file": "x"}, True, "model"),
    ],
)
def test_it_refuses_a_malformed_form_naming_the_field(
    live_gateway: str, api_key: str, hearing: FakeLlama, fields: dict, files: bool, param: str
) -> None:
    if files:
        response = upload(live_gateway, api_key, fields)
    else:  # still multipart: an empty file part that is not `file`
        response = httpx.post(f"{live_gateway}{TRANSCRIBE}", headers={"Authorization": f"Bearer {api_key}"},
                              data=fields, files={"other": ("o.txt", b"o")}, timeout=60)  # fmt: skip

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert hearing.received == []


def test_it_wants_multipart(live_gateway: str, api_key: str, hearing: FakeLlama) -> None:
    response = httpx.post(f"{live_gateway}{TRANSCRIBE}", headers={"Authorization": f"Bearer {api_key}"},
                          json={"model": "hearing", "file": "UklGRg=="}, timeout=60)  # fmt: skip

    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]
