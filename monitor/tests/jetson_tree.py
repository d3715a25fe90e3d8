"""Fake sysfs/procfs/etc trees laid out like real Jetsons, for the collector and sampler tests."""

from __future__ import annotations

from pathlib import Path


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def agx_orin(root: Path) -> tuple[Path, Path, Path]:
    """An AGX Orin on L4T 36.4: devfreq GPU, two INA3221 hwmon chips (no input rail), pwmfan + tach."""
    sys, proc, etc = root / "sys", root / "proc", root / "etc"
    write(sys, "class/devfreq/17000000.gpu/cur_freq", "1300000000\n")
    write(sys, "class/devfreq/17000000.gpu/max_freq", "1301250000\n")
    write(sys, "class/devfreq/17000000.gpu/device/load", "523\n")
    write(sys, "class/devfreq/15340000.vic/cur_freq", "115200000\n")
    write(sys, "kernel/debug/bpmp/debug/clk/emc/rate", "2133000000\n")
    chip = "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    for channel, label, millivolts, milliamps in (
        (1, "VDD_GPU_SOC", 5000, 1000),
        (2, "VDD_CPU_CV", 5000, 400),
        (3, "VIN_SYS_5V0", 5000, 900),
    ):
        write(sys, f"{chip}/in{channel}_label", f"{label}\n")
        write(sys, f"{chip}/in{channel}_input", f"{millivolts}\n")
        write(sys, f"{chip}/curr{channel}_input", f"{milliamps}\n")
    write(sys, f"{chip}/in7_label", "sum of shunt voltages\n")
    write(sys, f"{chip}/in7_input", "40\n")
    write(sys, f"{chip}/curr7_input", "2300\n")
    chip = "bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon2"
    write(sys, f"{chip}/in1_label", "NC\n")
    write(sys, f"{chip}/in2_label", "VDDQ_VDD2_1V8AO\n")
    write(sys, f"{chip}/in2_input", "5000\n")
    write(sys, f"{chip}/curr2_input", "100\n")
    for index, (zone, millic) in enumerate(
        (("cpu-thermal", "52562"), ("gpu-thermal", "48437"), ("cv0-thermal", "-256000"), ("tj-thermal", "53000"))
    ):
        write(sys, f"class/thermal/thermal_zone{index}/type", f"{zone}\n")
        write(sys, f"class/thermal/thermal_zone{index}/temp", f"{millic}\n")
    write(sys, "class/hwmon/hwmon3/name", "pwmfan\n")
    write(sys, "class/hwmon/hwmon3/pwm1", "128\n")
    write(sys, "class/hwmon/hwmon4/name", "pwm_tach\n")
    write(sys, "class/hwmon/hwmon4/rpm", "2345\n")
    write(proc, "meminfo", "MemTotal:       64335836 kB\nMemFree:        40000000 kB\nNvMapMemUsed:    1048576 kB\n")
    write(proc, "device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    write(
        etc,
        "nv_tegra_release",
        "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, DATE: Mon Jun 16 16:07:13 UTC 2025\n",
    )
    return sys, proc, etc


def nano_jetpack4(root: Path) -> tuple[Path, Path, Path]:
    """A Jetson Nano on JetPack 4.6: legacy gpu.0 load, INA3221 through iio, the old pwm-fan node."""
    sys, proc, etc = root / "sys", root / "proc", root / "etc"
    write(sys, "devices/gpu.0/load", "760\n")
    iio = "bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for channel, name, milliwatts in ((0, "POM_5V_IN", 4100), (1, "POM_5V_GPU", 1500), (2, "POM_5V_CPU", 900)):
        write(sys, f"{iio}/rail_name_{channel}", f"{name}\n")
        write(sys, f"{iio}/in_power{channel}_input", f"{milliwatts}\n")
        write(sys, f"{iio}/in_voltage{channel}_input", "5000\n")
    write(sys, "devices/pwm-fan/cur_pwm", "255\n")
    write(sys, "devices/pwm-fan/rpm_measured", "4100\n")
    write(proc, "device-tree/model", "NVIDIA Jetson Nano Developer Kit\x00")
    write(etc, "nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64\n")
    return sys, proc, etc


def fake_nvpmodel(folder: Path, mode: str) -> list[str]:
    """An executable that answers like `nvpmodel -q`."""
    script = folder / "nvpmodel"
    script.write_text(f"#!/bin/sh\necho 'NV Power Mode: {mode}'\necho 0\n")
    script.chmod(0o755)
    return [str(script), "-q"]


def orin_nano_jetpack6(root: Path) -> tuple[Path, Path, Path]:
    """An Orin Nano on JetPack 6: devfreq load beside cur_freq, one INA3221 with the VDD_IN input rail."""
    sys, proc, etc = root / "sys", root / "proc", root / "etc"
    write(sys, "class/devfreq/17000000.gpu/load", "840\n")
    write(sys, "class/devfreq/17000000.gpu/cur_freq", "612000000\n")
    chip = "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    for channel, label, millivolts, milliamps in (
        (1, "VDD_IN", 5000, 3500),
        (2, "VDD_CPU_GPU_CV", 5000, 1800),
        (3, "VDD_SOC", 5000, 700),
    ):
        write(sys, f"{chip}/in{channel}_label", f"{label}\n")
        write(sys, f"{chip}/in{channel}_input", f"{millivolts}\n")
        write(sys, f"{chip}/curr{channel}_input", f"{milliamps}\n")
    write(proc, "device-tree/model", "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    return sys, proc, etc
