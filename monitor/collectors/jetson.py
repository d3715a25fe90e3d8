"""Jetson figures through sysfs: GPU load and clock, EMC, NvMap memory, power rails, fans, power mode, board."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from gateway.node.host import meminfo
from monitor.collectors import files, rails

GPU_DEVFREQ_NAMES = ("gpu", "gv11b", "ga10b", "gp10b", "gm20b")
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
        self._rails: list[rails.Rail] | None = None
        self._oc_events: dict[str, int] = {}

    def collect(self) -> dict:
        result: dict = {}
        gpu = {**self.gpu(), **self.emc()}
        if gpu:
            result["gpu"] = gpu
        nvmap = meminfo(self.proc_root).get("NvMapMemUsed")
        if nvmap is not None:
            result["memory"] = {"gpu_shared": nvmap}
        readings = self.rails()
        if readings:
            total_mw, source = rails.total_power(readings)
            result["power"] = {"total_mw": total_mw, "total_source": source, "rails": readings}
        fans = self.fans()
        if fans:
            result["fans"] = fans
        throttle = self.throttle(gpu)
        if throttle:
            result["throttle"] = throttle
        board = {"model": self.board_model(), "l4t_release": self.l4t_release(), "power_mode": self.power_mode()}
        board = {key: value for key, value in board.items() if value}
        if board:
            result["board"] = board
        return result

    def throttle(self, gpu: dict) -> dict:
        """Evidence that the board is throttling: its over-current event counters (and which rose since the last
        sample: the board cut its clocks for power), and clocks held below their maximum."""
        result: dict = {}
        counts: dict[str, int] = {}
        for chip in sorted((self.sys_root / "class" / "hwmon").glob("hwmon*")):
            for counter in sorted(chip.glob("oc*_event_cnt")):
                value = files.read_float(counter)
                if value is not None:
                    counts[counter.name.removesuffix("_event_cnt")] = int(value)
        if counts:
            result["oc_events"] = counts
            result["oc_events_rising"] = [n for n, c in counts.items() if c > self._oc_events.get(n, c)]
            self._oc_events = counts
        if gpu.get("mhz") is not None and gpu.get("max_mhz"):
            result["gpu_below_max"] = gpu["mhz"] < gpu["max_mhz"]
        capped = []
        for policy in sorted((self.sys_root / "devices" / "system" / "cpu" / "cpufreq").glob("policy*")):
            allowed = files.read_float(policy / "scaling_max_freq")
            hardware = files.read_float(policy / "cpuinfo_max_freq")
            if allowed is not None and hardware and allowed < hardware:
                capped.append(policy.name)
        if capped:
            result["cpu_capped"] = capped
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
        if self._rails is None:
            # Found once: the devices do not come and go, and a sample should cost a few file reads.
            self._rails = rails.discover(self.sys_root)
        readings = {}
        for rail in self._rails:
            reading = rail.read()
            if reading is not None:
                readings[rail.name] = reading
        return readings

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
