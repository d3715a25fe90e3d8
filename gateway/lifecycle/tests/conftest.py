"""Lifecycle fixtures: a real supervisor process over the test database, and the real small model registered as two
managed models under a budget that fits only one of them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from gateway.lifecycle import estimate
from gateway.llama import model_path
from gateway.models import NodeAdmission, Supervisor
from gateway.node import link as client
from gateway.node.identity import node_name
from gateway.registry import register_model
from gateway.tests.conftest import api_key, fake_llama  # noqa: F401 (fixtures)
from monitor.models import Node
from monitor.tests.jetson_tree import orin_nano_chip, orin_nano_jetpack6, set_rail, write
from tests.live import ARTIFACTS, ROOT, database_url, stop_process

MIB = 1024 * 1024
# The managed models' fields: a quick load, and no prompt cache, so that what they measure once ready is all they can
# grow to and the budget below keeps its meaning (with MODEL_CACHE_RAM_MB's 256 MiB one would not fit).
SMALL = {"ctx_size": 1024, "parallel": 1, "cache_ram_mb": 0}
# Fits one small model (its estimate is about 335 MiB, it measures about 330 MiB), never two.
BUDGET_FOR_ONE_MB = 500


@dataclass
class RunningSupervisor:
    process: subprocess.Popen[bytes]
    address: str
    var_dir: Path

    def status(self) -> dict[str, dict[str, Any]]:
        """Every managed model's state as the supervisor has it now, by model id."""
        reply = asyncio.run(client.command(self.address, "status"))
        return {model["id"]: model for model in reply["models"]}

    def state(self, model_id: str) -> dict[str, Any]:
        return self.status()[model_id]

    def status_budget(self) -> dict[str, Any]:
        return asyncio.run(client.command(self.address, "status"))["budget"]

    def wait_for(self, model_id: str, check: Callable[[dict[str, Any]], bool], limit: float, what: str) -> float:
        """Seconds until `check` holds for the model's state, polled every 20 ms; AssertionError after `limit`."""
        started = time.monotonic()
        while not check(state := self.state(model_id)):
            if time.monotonic() - started > limit:
                raise AssertionError(f"{model_id} never became {what} within {limit} s: {state}")
            time.sleep(0.02)
        return time.monotonic() - started

    def starts(self, model_id: str) -> int:
        """How many llama-servers the supervisor has started for the model (one header line in its log each)."""
        log = self.var_dir / "llama" / f"{model_id}.log"
        return log.read_text(errors="replace").count(" supervisor: ") if log.exists() else 0

    def llama_servers(self) -> list[psutil.Process]:
        """Its llama-server children that are alive."""
        children = psutil.Process(self.process.pid).children()
        return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def start_supervisor(var_dir: Path, env: dict[str, str], timeout: float = 60) -> RunningSupervisor:
    """`manage.py supervise` on a free port over the test database, once it has recorded its address."""
    var_dir.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"supervisor-{var_dir.name}.log", "ab")  # noqa: SIM115 (the process owns it)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "supervise", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "jetsonsite.settings", "DATABASE_URL": database_url(),
             "VAR_DIR": str(var_dir), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the supervisor exited with code {process.returncode}: see {log.name}")
        row = Supervisor.objects.filter(node=node_name(), pid=process.pid).first()
        if row is not None:
            return RunningSupervisor(process, client.address_of(row), var_dir)
        time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"the supervisor did not record its address within {timeout:.0f} s: see {log.name}")


@pytest.fixture
def supervisor_factory(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., RunningSupervisor]]:
    """Start supervisors with settings of the test's choice; each is stopped (SIGTERM: it stops its models and
    writes their states) before the test database is flushed, where a live writer would deadlock PostgreSQL."""
    started: list[RunningSupervisor] = []

    def start(**settings: object) -> RunningSupervisor:
        env = {"MODEL_MEMORY_BUDGET_MB": str(BUDGET_FOR_ONE_MB), "MODEL_STOP_GRACE": "5", "LOG_LEVEL": "INFO"}
        env.update({name: str(value) for name, value in settings.items()})
        supervisor = start_supervisor(tmp_path / f"supervisor-{len(started)}", env)
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        stop_process(supervisor.process)


@pytest.fixture
def supervisor(supervisor_factory: Callable[..., RunningSupervisor]) -> RunningSupervisor:
    return supervisor_factory()


@pytest.fixture
def small_gguf() -> str:
    return str(model_path())


def register_managed(model_id: str, gguf: str, **fields: Any) -> None:
    register_model(model_id, [], managed={"gguf_path": gguf, **SMALL, **fields})


@pytest.fixture
def two_models(transactional_db: None, small_gguf: str) -> tuple[str, str]:
    """The real small model as two managed models, "model-a" and "model-b"."""
    register_managed("model-a", small_gguf)
    register_managed("model-b", small_gguf)
    need = estimate.estimate(small_gguf, estimate.Options(**SMALL)).total
    assert need < BUDGET_FOR_ONE_MB * MIB < 2 * need, "the budget must fit exactly one of them"
    return "model-a", "model-b"


@dataclass
class RunningSampler:
    """`manage.py monitor` over a fake Orin Nano tree whose rails and thermal zone the test writes."""

    process: subprocess.Popen[bytes]
    sys: Path

    def set_power(self, watts: float) -> float:
        """VDD_IN (the board total) at 5 V drawing what makes `watts`; the wall-clock time it was written."""
        set_rail(self.sys, orin_nano_chip(self.sys), 1, 5000, watts * 200)
        return time.time()

    def set_temperature(self, celsius: float) -> None:
        write(self.sys, "class/thermal/thermal_zone0/temp", f"{round(celsius * 1000)}\n")

    def wait_for_admission(self, state: str, limit: float = 20) -> None:
        deadline = time.monotonic() + limit
        while NodeAdmission.objects.filter(node=node_name(), state=state).first() is None:
            assert self.process.poll() is None, "the sampler exited: see its log in test-artifacts"
            assert time.monotonic() < deadline, f"the node never became {state} within {limit} s"
            time.sleep(0.05)


@pytest.fixture
def sampler_factory(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., RunningSampler]]:
    """Start the node's sampler over a fake tree with settings of the test's choice; stopped (SIGTERM) before the
    test database is flushed, since it writes energy facts and its node's admission row."""
    started: list[RunningSampler] = []

    def start(**settings: object) -> RunningSampler:
        root = tmp_path / f"sampler-{len(started)}"
        ARTIFACTS.mkdir(exist_ok=True)
        tree, proc, etc = orin_nano_jetpack6(root)
        write(tree, "class/thermal/thermal_zone0/type", "cpu-thermal\n")
        write(tree, "class/thermal/thermal_zone0/temp", "45000\n")
        env = {"MONITOR_SYS_ROOT": str(tree), "MONITOR_PROC_ROOT": str(proc), "MONITOR_ETC_ROOT": str(etc),
               "ENERGY_SAMPLE_HZ": "20", "ADMISSION_INTERVAL": "0.2", "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
               "DATABASE_URL": database_url(), "VAR_DIR": str(root / "var"), "MONITOR_INTERVAL": "0.5",
               **{name: str(value) for name, value in settings.items()}}  # fmt: skip
        log = open(ARTIFACTS / f"sampler-{tmp_path.name}-{len(started)}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "manage.py", "monitor"], cwd=ROOT, env={**os.environ, **env}, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        sampler = RunningSampler(process, tree)
        started.append(sampler)
        deadline = time.monotonic() + 60
        # Ready once it has taken a sample (the node's row exists) and told its first admission decision.
        while not Node.objects.filter(name=node_name(), last_seen__isnull=False).exists():
            assert process.poll() is None, f"the sampler exited: see {log.name}"
            assert time.monotonic() < deadline, f"the sampler took no sample within 60 s: see {log.name}"
            time.sleep(0.1)
        return sampler

    yield start
    for sampler in started:
        stop_process(sampler.process)


@contextmanager
def streaming(live_gateway: str, key: str, model: str, supervisor: RunningSupervisor) -> Iterator[None]:
    """A long stream from `model` for the time of the block: the model is busy, so it cannot be evicted."""
    stop = threading.Event()

    def stream() -> None:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2000,
                "ignore_eos": True}  # fmt: skip
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.stream("POST", f"{live_gateway}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            for _ in r.iter_lines():
                if stop.is_set():
                    return

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        supervisor.wait_for(model, lambda s: s["in_flight"] == 1, 60, "busy")
        yield
    finally:
        stop.set()
        thread.join(60)
