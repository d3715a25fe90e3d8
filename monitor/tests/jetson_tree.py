"""Fake sysfs/procfs/etc trees laid out like real Jetsons, for the collector and sampler tests."""

from __future__ import annotations

import os
from pathlib import Path

# Where the INA chips sit on the I2C bus of the boards below (the folder /sys/class/hwmon/hwmonN links to).
I2C = "devices/platform/bus@0/c240000.i2c/i2c-1"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def hwmon(sys: Path, device: str, number: int, name: str, driver: str | None = None) -> str:
    """A hwmon device as the kernel lays it out: `<device>/hwmon/hwmonN`, linked from /sys/class/hwmon/hwmonN
    (and the I2C device from its driver's folder); the numbers follow probe order and change between boots."""
    folder = f"{device}/hwmon/hwmon{number}"
    write(sys, f"{folder}/name", f"{name}\n")
    link = sys / "class" / "hwmon" / f"hwmon{number}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(sys / folder, link.parent))
    if driver:
        bound = sys / "bus" / "i2c" / "drivers" / driver / Path(device).name
        bound.parent.mkdir(parents=True, exist_ok=True)
        bound.symlink_to(os.path.relpath(sys / device, bound.parent))
    return folder


def ina3221(sys: Path, device: str, number: int, channels: dict[int, tuple[str, int, int]]) -> str:
    """An INA3221 with its labelled channels (label, mV, mA) and the sum-of-shunts channel the driver adds."""
    chip = hwmon(sys, device, number, "ina3221", driver="ina3221")
    for channel, (label, millivolts, milliamps) in channels.items():
        write(sys, f"{chip}/in{channel}_label", f"{label}\n")
        if label != "NC":
            write(sys, f"{chip}/in{channel}_input", f"{millivolts}\n")
            write(sys, f"{chip}/curr{channel}_input", f"{milliamps}\n")
        # in4..in6 are the shunt voltages of channels 1..3: readings, not rails.
        write(sys, f"{chip}/in{channel + 3}_input", "12\n")
    write(sys, f"{chip}/in7_label", "sum of shunt voltages\n")
    write(sys, f"{chip}/in7_input", "40\n")
    write(sys, f"{chip}/curr7_input", "2300\n")
    return chip


def set_rail(sys: Path, chip: str, channel: int, millivolts: float, milliamps: float) -> None:
    """Change an INA3221 channel's reading in place, as the driver's next conversion would."""
    write(sys, f"{chip}/in{channel}_input", f"{int(millivolts)}\n")
    write(sys, f"{chip}/curr{channel}_input", f"{int(milliamps)}\n")


def agx_orin(root: Path, hwmon_numbers: tuple[int, int] = (1, 2)) -> tuple[Path, Path, Path]:
    """An AGX Orin on L4T 36.4: devfreq GPU, two INA3221 hwmon chips (no input rail), pwmfan + tach."""
    sys, proc, etc = root / "sys", root / "proc", root / "etc"
    write(sys, "class/devfreq/17000000.gpu/cur_freq", "1300000000\n")
    write(sys, "class/devfreq/17000000.gpu/max_freq", "1301250000\n")
    write(sys, "class/devfreq/17000000.gpu/device/load", "523\n")
    write(sys, "class/devfreq/15340000.vic/cur_freq", "115200000\n")
    write(sys, "kernel/debug/bpmp/debug/clk/emc/rate", "2133000000\n")
    ina3221(
        sys,
        f"{I2C}/1-0040",
        hwmon_numbers[0],
        {1: ("VDD_GPU_SOC", 5000, 1000), 2: ("VDD_CPU_CV", 5000, 400), 3: ("VIN_SYS_5V0", 5000, 900)},
    )
    ina3221(
        sys, f"{I2C}/1-0041", hwmon_numbers[1], {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 100), 3: ("NC", 0, 0)}
    )
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


def orin_nano_jetpack6(root: Path, hwmon_number: int = 1) -> tuple[Path, Path, Path]:
    """An Orin Nano on JetPack 6: devfreq load beside cur_freq, one INA3221 with the VDD_IN input rail."""
    sys, proc, etc = root / "sys", root / "proc", root / "etc"
    write(sys, "class/devfreq/17000000.gpu/load", "840\n")
    write(sys, "class/devfreq/17000000.gpu/cur_freq", "612000000\n")
    ina3221(
        sys,
        f"{I2C}/1-0040",
        hwmon_number,
        {1: ("VDD_IN", 5000, 3500), 2: ("VDD_CPU_GPU_CV", 5000, 1800), 3: ("VDD_SOC", 5000, 700)},
    )
    write(proc, "device-tree/model", "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    return sys, proc, etc


def orin_nano_chip(sys: Path) -> str:
    """The folder of the Orin Nano's INA3221, whatever its hwmon number."""
    return str(next((sys / I2C / "1-0040" / "hwmon").glob("hwmon*")).relative_to(sys))


def thor(
    root: Path, hwmon_numbers: tuple[int, int] = (1, 2), ina238_label: str | None = None
) -> tuple[Path, Path, Path]:
    """An AGX Thor developer kit on L4T 38: the module's INA3221 (VDD_GPU, VDD_CPU_SOC_MSS, VIN_SYS_5V0, with the
    voltages a real one reads) and the carrier's INA238 measuring the board's input, VIN, in µW. Mainline's ina238
    driver labels nothing; `ina238_label` puts a device-tree label on the hwmon device (its `label` attribute)."""
    sys, proc, etc = root / "sys", root / "proc", root / "etc"
    ina3221(
        sys,
        f"{I2C}/1-0040",
        hwmon_numbers[0],
        {1: ("VDD_GPU", 12040, 640), 2: ("VDD_CPU_SOC_MSS", 12040, 960), 3: ("VIN_SYS_5V0", 5088, 1740)},
    )
    chip = hwmon(sys, "devices/platform/bus@0/c250000.i2c/i2c-7/7-0044", hwmon_numbers[1], "ina238", driver="ina238")
    write(sys, f"{chip}/in0_input", "15\n")  # the shunt voltage
    write(sys, f"{chip}/in1_input", "19840\n")
    write(sys, f"{chip}/curr1_input", "997\n")
    write(sys, f"{chip}/power1_input", "19780000\n")
    if ina238_label:
        write(sys, f"{chip}/label", f"{ina238_label}\n")
    write(proc, "device-tree/model", "NVIDIA Jetson AGX Thor Developer Kit\x00")
    write(etc, "nv_tegra_release", "# R38 (release), REVISION: 4.0, GCID: 43443517, BOARD: generic, EABI: aarch64\n")
    return sys, proc, etc


def thor_ina238(sys: Path) -> str:
    """The folder of the Thor carrier's INA238, whatever its hwmon number."""
    return str(next((sys / "devices/platform/bus@0/c250000.i2c/i2c-7/7-0044/hwmon").glob("hwmon*")).relative_to(sys))
