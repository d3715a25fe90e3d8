"""The systemd units are valid and start commands that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import get_commands

UNITS = sorted((Path(__file__).resolve().parent.parent / "systemd").glob("*.service"))


def test_there_are_units_for_the_gateway_the_supervisor_the_sampler_and_llama_server() -> None:
    assert {u.name for u in UNITS} >= {
        "jetson-gateway.service",
        "jetson-gateway-supervisor.service",
        "jetson-gateway-monitor.service",
        "llama-server@.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_every_manage_py_command_in_a_unit_exists(unit: Path) -> None:
    commands = re.findall(r"manage\.py (\w+)", unit.read_text())
    assert set(commands) <= set(get_commands()), f"{unit.name} runs a command that does not exist"


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: cannot verify unit syntax here")
    target = tmp_path / unit.name.replace("@", "@test")
    target.write_text(unit.read_text())
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)], capture_output=True, text=True)
    # The install paths (/opt/jetson-gateway) do not exist on a build machine; every other complaint counts.
    complaints = [line for line in result.stderr.splitlines() if line and "/opt/jetson-gateway" not in line]
    assert complaints == []


def _setting(unit: str, name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", (UNITS[0].parent / unit).read_text(), re.M)
    assert match, f"{unit} sets no {name}"
    return match.group(1).strip()


def test_the_supervisors_unit_lets_it_drain_and_stop_its_models() -> None:
    """SIGTERM drains (up to SUPERVISOR_DRAIN_SECONDS), then stops each model (SIGKILL after MODEL_STOP_GRACE): all
    of it must fit before systemd kills what is left."""
    from django.conf import settings

    from gateway.lifecycle.supervisor import SAVE_LIMIT

    needed = settings.SUPERVISOR_DRAIN_SECONDS + SAVE_LIMIT + settings.MODEL_STOP_GRACE + 5
    assert float(_setting("jetson-gateway-supervisor.service", "TimeoutStopSec")) >= needed
    assert _setting("jetson-gateway-supervisor.service", "KillMode") == "mixed"


def test_the_llama_server_example_has_a_key_file_and_a_bounded_prompt_cache() -> None:
    unit = (UNITS[0].parent / "llama-server@.service").read_text()
    assert "--api-key-file" in unit and "--cache-ram" in unit
