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
