"""Only the gateway reaches a managed model: each llama-server gets a random key from its supervisor, in a 0600
file rather than on its command line, and refuses anyone without it; the gateway gets the key with its lease."""

from __future__ import annotations

import os
import stat

import httpx
import psutil

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}


def test_a_managed_llama_server_refuses_requests_without_its_key(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    state = supervisor.state(model_a)
    direct = f"http://127.0.0.1:{state['port']}/v1/chat/completions"

    without = httpx.post(direct, json={"model": model_a, **HELLO}, timeout=30)
    guessed = httpx.post(direct, json={"model": model_a, **HELLO}, headers={"Authorization": "Bearer x"}, timeout=30)

    assert without.status_code == 401
    assert guessed.status_code == 401


def test_its_key_is_in_a_private_file_not_on_its_command_line_nor_in_any_log(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor: RunningSupervisor
) -> None:
    model_a, _ = two_models
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    state = supervisor.state(model_a)
    command = psutil.Process(state["pid"]).cmdline()
    key_file = command[command.index("--api-key-file") + 1]
    with open(key_file) as file:
        key = file.read().strip()

    assert len(key) >= 32 and key not in " ".join(command)
    assert "--api-key" not in command
    assert stat.S_IMODE(supervisor.var_dir.joinpath("llama", "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    logged = "".join(p.read_text(errors="replace") for p in (supervisor.var_dir / "llama").glob("*.log*"))
    assert "supervisor: " in logged and key not in logged
    # The key works: it is what the gateway was given.
    direct = f"http://127.0.0.1:{state['port']}/slots"
    assert httpx.get(direct, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
