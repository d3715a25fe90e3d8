"""A llama-server that cannot load its model: the request gets a 503 with the exit code and the log's last lines,
and the model stays failed (refusing at once) until the retry time has passed or an operator loads it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.lifecycle.tests.conftest import RunningSupervisor, register_managed
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}
RETRY = 2.0


@pytest.fixture
def unknown_architecture_gguf(small_gguf: str, tmp_path: Path) -> str:
    """The small model with its architecture renamed: the header reads fine, llama-server cannot load it."""
    path = tmp_path / "unknown.gguf"
    data = Path(small_gguf).read_bytes()
    header = 16 * 1024 * 1024
    path.write_bytes(data[:header].replace(b"gemma3", b"gemmaX") + data[header:])
    return str(path)


def test_a_model_that_fails_to_load_gives_503_with_the_exit_code_and_log_lines_then_stays_failed(
    live_gateway: str, api_key: str, transactional_db: None, unknown_architecture_gguf: str, supervisor_factory: object
) -> None:
    register_managed("broken", unknown_architecture_gguf)
    supervisor: RunningSupervisor = supervisor_factory(MODEL_FAILED_RETRY_SECONDS=RETRY)  # type: ignore[operator]

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": "broken", **HELLO})

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_load_failed"
    assert "exited with code 1 while loading" in error["message"]
    assert "failed to load model" in error["message"]  # a line of llama-server's own log
    assert supervisor.state("broken")["state"] == "failed"

    again = post(live_gateway, api_key, "/v1/chat/completions", {"model": "broken", **HELLO})
    assert again.status_code == 503 and again.json()["error"]["code"] == "model_load_failed"
    assert 1 <= int(again.headers["Retry-After"]) <= RETRY
    assert supervisor.starts("broken") == 1  # refused at once, not tried again

    time.sleep(RETRY)
    post(live_gateway, api_key, "/v1/chat/completions", {"model": "broken", **HELLO})
    assert supervisor.starts("broken") == 2  # the retry time has passed: tried again
