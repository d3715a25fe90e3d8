"""Jetson figures through sysfs: GPU load and clock, EMC, NvMap memory, INA3221 rails, fans, power mode, board."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from monitor.collectors import files

GPU_DEVFREQ_NAMES = ("gpu", "gv11b", "ga10b", "gp10b", "gm20b")
# Rails that measure the whole module's input; without one of them the total is the sum of the rails.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
POWER_MODE_EVERY = 60.0  # seconds; nvpmodel is a subprocess, and the mode changes only by hand


class JetsonCollector:
    def __init__(self, sys_root: Path, proc_root: Path, etc_root: Path, nvpmodel: list[str] | None = None) -> None:
        self.sys_root = sys_root
        self.proc_root = proc_root
        self.etc_root = etc_root
        if nvpmodel is None:
            found = shutil.which("nvpmodel")
            nvpmodel = [found, "-q"] if found else []
        self.nvpmodel = nvpmodel
        self._power_mode: tuple[float, str | None] | None = None

    def collect(self) -> dict:
        result: dict = {}
        gpu = {**self.gpu(), **self.emc()}
        if gpu:
            result["gpu"] = gpu
        nvmap = files.meminfo(self.proc_root).get("NvMapMemUsed")
        if nvmap is not None:
            result["memory"] = {"gpu_shared": nvmap}
        rails = self.rails()
        if rails:
            result["power"] = {"total_mw": total_power(rails), "rails": rails}
        fans = self.fans()
        if fans:
            result["fans"] = fans
        board = {"model": self.board_model(), "l4t_release": self.l4t_release(), "power_mode": self.power_mode()}
        board = {key: value for key, value in board.items() if value}
        if board:
            result["board"] = board
        return result

    def gpu(self) -> dict:
        for device in sorted((self.sys_root / "class" / "devfreq").glob("*")):
            if not any(name in device.name for name in GPU_DEVFREQ_NAMES):
                continue
            load = files.read_float(device / "device" / "load")
            if load is None:
                load = files.read_float(device / "load")
            hz = files.read_float(device / "cur_freq")
            max_hz = files.read_float(device / "max_freq")
            return {
                # The driver reports load in tenths of a percent.
                "percent": round(load / 10, 1) if load is not None else None,
                "mhz": round(hz / 1e6) if hz is not None else None,
                "max_mhz": round(max_hz / 1e6) if max_hz is not None else None,
            }
        # Older kernels (Nano, Xavier on JetPack 4) have no devfreq link for the GPU but keep its load here.
        for legacy in ("devices/gpu.0/load", "devices/platform/gpu.0/load"):
            load = files.read_float(self.sys_root / legacy)
            if load is not None:
                return {"percent": round(load / 10, 1)}
        return {}

    def emc(self) -> dict:
        # The EMC clock is only readable by root (debugfs); without it the field is left out.
        for path in ("kernel/debug/bpmp/debug/clk/emc/rate", "kernel/debug/clk/emc/clk_rate"):
            hz = files.read_float(self.sys_root / path)
            if hz:
                result: dict = {"emc_mhz": round(hz / 1e6)}
                activity_khz = files.read_float(self.sys_root / "kernel" / "actmon_avg_activity" / "mc_all")
                if activity_khz is not None:
                    result["emc_percent"] = round(min(activity_khz * 1000 / hz * 100, 100.0), 1)
                return result
        return {}

    def rails(self) -> dict[str, dict]:
        rails: dict[str, dict] = {}
        drivers = self.sys_root / "bus" / "i2c" / "drivers"
        # JetPack 5 and 6: a hwmon device per INA3221 with in<N>_label, in<N>_input (mV), curr<N>_input (mA).
        for hwmon in sorted(drivers.glob("ina3221*/*/hwmon/hwmon*")):
            for label_file in sorted(hwmon.glob("in*_label")):
                channel = label_file.name.removeprefix("in").removesuffix("_label")
                name = files.read_text(label_file)
                if not name or name == "NC" or name.lower().startswith("sum of"):
                    continue
                mv = files.read_float(hwmon / f"in{channel}_input")
                ma = files.read_float(hwmon / f"curr{channel}_input")
                if mv is None or ma is None:
                    continue
                rails[name] = {"mw": round(mv * ma / 1000, 1), "mv": mv, "ma": ma}
        # JetPack 4: iio devices with rail_name_<N> and in_power<N>_input (mW).
        for iio in sorted(drivers.glob("ina3221x/*/iio:device*")):
            for name_file in sorted(iio.glob("rail_name_*")):
                channel = name_file.name.removeprefix("rail_name_")
                name = files.read_text(name_file)
                mw = files.read_float(iio / f"in_power{channel}_input")
                if not name or mw is None:
                    continue
                rails[name] = {
                    "mw": mw,
                    "mv": files.read_float(iio / f"in_voltage{channel}_input"),
                    "ma": files.read_float(iio / f"in_current{channel}_input"),
                }
        return rails

    def fans(self) -> dict[str, dict]:
        fans: dict[str, dict] = {}
        for chip in sorted((self.sys_root / "class" / "hwmon").glob("hwmon*")):
            name = files.read_text(chip / "name") or chip.name
            pwm = files.read_float(chip / "pwm1")
            if pwm is not None:
                fans.setdefault(name, {})["pwm_percent"] = round(pwm / 255 * 100, 1)
            rpm = files.read_float(chip / "rpm")
            if rpm is None:
                rpm = files.read_float(chip / "fan1_input")
            if rpm is not None:
                fans.setdefault(name, {})["rpm"] = int(rpm)
        legacy = self.sys_root / "devices" / "pwm-fan"
        pwm = files.read_float(legacy / "cur_pwm")
        if pwm is not None:
            rpm = files.read_float(legacy / "rpm_measured")
            fans["pwm-fan"] = {"pwm_percent": round(pwm / 255 * 100, 1), "rpm": int(rpm) if rpm is not None else None}
        return fans

    def board_model(self) -> str | None:
        text = files.read_text(self.proc_root / "device-tree" / "model")
        return text.rstrip("\x00").strip() if text else None

    def l4t_release(self) -> str | None:
        # e.g. "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, DATE: ..."
        text = files.read_text(self.etc_root / "nv_tegra_release") or ""
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
        return f"{match[1]}.{match[2]}" if match else None

    def power_mode(self) -> str | None:
        if not self.nvpmodel:
            return None
        now = time.monotonic()
        if self._power_mode is None or now - self._power_mode[0] > POWER_MODE_EVERY:
            self._power_mode = (now, self._query_power_mode())
        return self._power_mode[1]

    def _query_power_mode(self) -> str | None:
        try:
            result = subprocess.run(self.nvpmodel, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"NV Power Mode:\s*(.+)", result.stdout)
        return match[1].strip() if match else None


def total_power(rails: dict[str, dict]) -> float:
    """The module's input power when a rail measures it, else the sum of the rails (AGX Orin has no input rail)."""
    for name in INPUT_RAILS:
        if name in rails and rails[name].get("mw") is not None:
            return rails[name]["mw"]
    return round(sum(rail.get("mw") or 0 for rail in rails.values()), 1)
