"""Memory as it is now: the budget is capped at each decision by what the machine has available, less the reserve,
plus what the supervisor's own models hold; when that shrinks below what is loaded, idle models are stopped (the
least recently used first). A model's memory is its peak (VmHWM), not its resident size of the moment.

The supervisor reads /proc/meminfo under MONITOR_PROC_ROOT: these tests give it one whose MemAvailable they set."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.lifecycle.tests.conftest import RunningSupervisor, streaming
from gateway.tests.conftest import post

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
MIB = 1024 * 1024


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "vmstat").write_text("oom_kill 0\n")

    def set_available(self, mib: int) -> None:
        text = f"MemTotal: {8 * 1024 * 1024} kB\nMemFree: {mib * 1024} kB\nMemAvailable: {mib * 1024} kB\n"
        (self.root / "meminfo.new").write_text(text)
        (self.root / "meminfo.new").replace(self.root / "meminfo")


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path / "proc")
    fake.set_available(4096)
    return fake


def test_idle_models_are_stopped_when_the_memory_available_shrinks_and_busy_ones_stay(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object, proc: FakeProc
) -> None:
    model_a, model_b = two_models
    supervisor: RunningSupervisor = supervisor_factory(  # type: ignore[operator]
        MODEL_MEMORY_BUDGET_MB="", MODEL_MEMORY_RESERVE_MB=100, MONITOR_PROC_ROOT=proc.root
    )
    for model in (model_a, model_b):
        assert post(live_gateway, api_key, "/v1/chat/completions", {"model": model, **HELLO}).status_code == 200
    memory = supervisor.state(model_b)["memory"]
    assert memory["peak_bytes"] >= memory["measured_bytes"] > 100 * MIB  # VmHWM (+ device buffers), not RSS now

    with streaming(live_gateway, api_key, model_b, supervisor):
        # Something else took all the memory the machine had, and the reserve is gone too.
        proc.set_available(0)

        supervisor.wait_for(model_a, lambda s: s["state"] == "stopped", 5, "stopped")
        time.sleep(1.5)  # the next looks at the memory stop nothing busy either
        assert supervisor.state(model_b)["state"] == "ready"


def test_a_load_that_does_not_fit_the_memory_available_now_is_refused(
    live_gateway: str, api_key: str, two_models: tuple[str, str], supervisor_factory: object, proc: FakeProc
) -> None:
    model_a, _ = two_models
    proc.set_available(100)  # far less than the small model needs
    supervisor_factory(MODEL_MEMORY_BUDGET_MB=2000, MODEL_MEMORY_RESERVE_MB=0, MONITOR_PROC_ROOT=proc.root)  # type: ignore[operator]

    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": model_a, **HELLO})

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_too_large" and "memory available now" in error["message"]
