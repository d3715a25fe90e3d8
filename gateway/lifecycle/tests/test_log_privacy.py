"""The files the project writes keep no prompt and no completion when LOG_PREVIEWS is off: not llama-server's logs
(which the supervisor writes, rotated by size, 0600 in a 0700 folder), not the supervisor's, not the gateway's."""

from __future__ import annotations

import stat

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.models import RequestLog
from gateway.tests.conftest import post
from tests.live import ARTIFACTS

MARKER = "Zanzibar-quokka-7731"  # a prompt no log has any business holding
ANSWER = "Kestrel-mango-4412"  # and the completion, which a grammar makes the model write
ROTATE_AT = 64 * 1024  # LLAMA_LOG_MAX_BYTES: the smallest allowed, so that a few loads rotate


def test_no_prompt_or_completion_reaches_a_log_file_and_llama_logs_are_private(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object
) -> None:
    model_a, model_b = two_models
    supervisor: RunningSupervisor = supervisor_factory(LLAMA_LOG_MAX_BYTES=ROTATE_AT, LOG_LEVEL="DEBUG")  # type: ignore[operator]
    prompt = {"messages": [{"role": "user", "content": f"Repeat after me: {MARKER} {MARKER}"}], "max_tokens": 24,
              "grammar": f'root ::= "{ANSWER}"'}  # fmt: skip
    folder = supervisor.var_dir / "llama"
    for _ in range(12):  # each load of the other model evicts this one: several starts, until the log rotates
        for model in (model_a, model_b):
            response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model, **prompt})
            assert response.status_code == 200
        if any(folder.glob("*.log.1")):
            break
    assert response.json()["choices"][0]["message"]["content"] == ANSWER
    row = RequestLog.objects.filter(request_id=response.headers["X-Request-Id"]).first()
    assert row is None or (row.prompt_preview, row.completion_preview) == ("", "")

    logs = sorted(folder.glob("*.log*"))
    assert any(path.name.endswith(".log.1") for path in logs), [p.name for p in logs]  # rotated by size
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in logs)
    written = [*logs, *ARTIFACTS.glob("supervisor-*.log"), *ARTIFACTS.glob("daphne-*.log")]
    for path in written:
        text = path.read_text(errors="replace")
        assert MARKER not in text, f"{path} holds the prompt"
        assert ANSWER not in text, f"{path} holds the completion"
