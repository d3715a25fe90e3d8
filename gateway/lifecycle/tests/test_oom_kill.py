"""A ready model killed by the kernel's OOM killer is recorded as such (failed, why, the figure it reached), its next
load reserves more, and it is retried only after a back-off that doubles with each kill, instead of being loaded
again by the next request to be killed again.

The kill is the test's SIGKILL, and the kernel's count of OOM kills (/proc/vmstat under MONITOR_PROC_ROOT) is raised
with it, as the kernel's own OOM killer does."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from gateway.lifecycle.tests.conftest import RunningSupervisor
from gateway.lifecycle.tests.test_memory_now import FakeProc
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
RETRY = 2  # MODEL_FAILED_RETRY_SECONDS: the first back-off


def test_an_oom_killed_model_is_recorded_budgeted_more_and_backs_off(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object, tmp_path: Path
) -> None:
    model_a, _ = two_models
    proc = FakeProc(tmp_path / "proc")
    proc.set_available(4096)
    supervisor: RunningSupervisor = supervisor_factory(  # type: ignore[operator]
        MONITOR_PROC_ROOT=proc.root, MODEL_FAILED_RETRY_SECONDS=RETRY, MODEL_MEMORY_BUDGET_MB=2000
    )
    assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO}).status_code == 200
    before = supervisor.state(model_a)

    (proc.root / "vmstat").write_text("oom_kill 1\n")
    os.kill(before["pid"], signal.SIGKILL)
    supervisor.wait_for(model_a, lambda s: s["state"] == "failed", 5, "failed")

    state = supervisor.state(model_a)
    assert state["oom_kills"] == 1 and "OOM killer" in state["last_error"]
    assert f"{state['memory']['peak_bytes'] // 2**20} MiB" in state["last_error"]
    assert state["memory"]["reserved_bytes"] >= 1.25 * state["memory"]["peak_bytes"]
    refused = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_oom_killed"
    assert 1 <= int(refused.headers["Retry-After"]) <= RETRY
    assert supervisor.starts(model_a) == 1  # not loaded again to be killed again

    time.sleep(RETRY + 0.2)
    again = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})
    assert again.status_code == 200
    assert supervisor.starts(model_a) == 2

    (proc.root / "vmstat").write_text("oom_kill 2\n")
    os.kill(supervisor.state(model_a)["pid"], signal.SIGKILL)
    supervisor.wait_for(model_a, lambda s: s["state"] == "failed", 5, "failed")
    refused = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})
    assert refused.json()["error"]["code"] == "model_oom_killed"
    assert int(refused.headers["Retry-After"]) > RETRY  # twice as long the second time
