"""Small readers for sysfs/procfs files that may be missing, unreadable or hold garbage: None, never an error."""

from __future__ import annotations

import os
from pathlib import Path


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def read_float(path: Path) -> float | None:
    # Bare os calls: the power sampler reads a few of these ten times a second, and a text file object costs 3x more.
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    try:
        return float(data.split()[0])
    except (ValueError, IndexError):
        return None


def thermal_zones(sys_root: Path) -> dict[str, float]:
    """°C by zone type from /sys/class/thermal, without offline zones (Jetson reports them as -256 °C)."""
    zones: dict[str, float] = {}
    for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*")):
        name = read_text(zone / "type")
        millic = read_float(zone / "temp")
        if not name or millic is None or millic <= -40000:
            continue
        zones[name] = round(millic / 1000, 1)
    return zones


def hwmon_temperatures(sys_root: Path) -> dict[str, float]:
    """°C by "<chip> <label>" from /sys/class/hwmon, which psutil reads too but without Jetson thermal zones."""
    temps: dict[str, float] = {}
    for chip in sorted((sys_root / "class" / "hwmon").glob("hwmon*")):
        chip_name = read_text(chip / "name") or chip.name
        for sensor in sorted(chip.glob("temp*_input")):
            millic = read_float(sensor)
            if millic is None or millic <= -40000:
                continue
            label = read_text(chip / sensor.name.replace("_input", "_label")) or sensor.name.removesuffix("_input")
            temps[f"{chip_name} {label}"] = round(millic / 1000, 1)
    return temps
