"""Power rails found by name: INA3221 and INA238 hwmon devices (JetPack 5+), INA3221 iio devices (JetPack 4)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from monitor.collectors import files

# Rails that measure the whole board's input: VDD_IN (Orin Nano/NX, Xavier NX, TX2), VIN (the Thor carrier's
# INA238), POM_5V_IN (Nano). Without one of them the total is the sum of the module's rails (AGX Orin, AGX Xavier).
INPUT_RAILS = ("VDD_IN", "VIN", "POM_5V_IN")
# The Thor carrier's INA238 measures the board's input; its driver may carry no label at all.
INA238_DEFAULT_NAME = "VIN"
_CHANNEL = re.compile(r"^in(\d+)_label$")


@dataclass(frozen=True)
class Rail:
    """One measured rail and the files it is read from, found once; a read is one or two small file reads."""

    name: str
    chip: str
    mv: Path | None = None
    ma: Path | None = None
    # A chip that computes power itself: the INA238 in µW, the JetPack 4 iio driver in mW.
    power: Path | None = None
    power_scale: float = 1.0

    def read_mw(self) -> float | None:
        if self.power is not None:
            raw = files.read_float(self.power)
            return raw * self.power_scale if raw is not None else None
        mv, ma = files.read_float(self.mv), files.read_float(self.ma)  # type: ignore[arg-type]
        return mv * ma / 1000 if mv is not None and ma is not None else None

    def read(self) -> dict | None:
        mw = self.read_mw()
        if mw is None:
            return None
        return {
            "mw": round(mw, 1),
            "mv": files.read_float(self.mv) if self.mv else None,
            "ma": files.read_float(self.ma) if self.ma else None,
        }

    def paths(self) -> list[Path]:
        """The files a power reading opens."""
        return [self.power] if self.power is not None else [self.mv, self.ma]  # type: ignore[list-item]


def _device_key(hwmon: Path) -> str:
    # /sys/class/hwmon/hwmonN links to <i2c device>/hwmon/hwmonN; N changes between boots, the device path does not.
    resolved = hwmon.resolve()
    return str(resolved.parent.parent) if resolved.parent.name == "hwmon" else str(resolved)


def _ina3221(hwmon: Path) -> list[Rail]:
    rails = []
    for label_file in hwmon.glob("in*_label"):
        match = _CHANNEL.match(label_file.name)
        name = files.read_text(label_file)
        # "NC" marks an unconnected channel; channel 7 is the sum of the shunt voltages, not a rail.
        if not match or not name or name == "NC" or name.lower().startswith("sum of"):
            continue
        channel = match[1]
        mv, ma = hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"
        if mv.exists() and ma.exists():
            rails.append((int(channel), Rail(name, "ina3221", mv=mv, ma=ma)))
    return [rail for _, rail in sorted(rails, key=lambda item: item[0])]


def _ina238(hwmon: Path, taken: set[str]) -> Rail | None:
    power = hwmon / "power1_input"
    if not power.exists():
        return None
    # A label from the device tree lands on a channel or, with the hwmon core's `label` attribute, on the device.
    name = next(
        (text for file in ("power1_label", "in1_label", "label") if (text := files.read_text(hwmon / file))),
        None,
    )
    if name is None:
        # Unlabelled: the carrier's input, unless another unlabelled INA238 already is.
        device = hwmon.resolve().parent.parent.name
        name = INA238_DEFAULT_NAME if INA238_DEFAULT_NAME not in taken else f"ina238 {device}"
    mv, ma = hwmon / "in1_input", hwmon / "curr1_input"
    return Rail(
        name,
        "ina238",
        mv=mv if mv.exists() else None,
        ma=ma if ma.exists() else None,
        power=power,
        power_scale=0.001,
    )


def _iio(sys_root: Path) -> list[Rail]:
    # JetPack 4: iio devices with rail_name_<N>, in_power<N>_input (mW), in_voltage<N>_input, in_current<N>_input.
    rails = []
    for iio in sorted((sys_root / "bus" / "i2c" / "drivers").glob("ina3221x/*/iio:device*")):
        for name_file in sorted(iio.glob("rail_name_*")):
            channel = name_file.name.removeprefix("rail_name_")
            name = files.read_text(name_file)
            power = iio / f"in_power{channel}_input"
            if not name or not power.exists():
                continue
            rails.append(
                Rail(
                    name,
                    "ina3221x",
                    mv=iio / f"in_voltage{channel}_input",
                    ma=iio / f"in_current{channel}_input",
                    power=power,
                )
            )
    return rails


def discover(sys_root: Path) -> list[Rail]:
    """Every rail of this machine, by hwmon name and label (never by hwmon number), in a stable order."""
    devices = []
    for hwmon in (sys_root / "class" / "hwmon").glob("hwmon*"):
        chip = files.read_text(hwmon / "name")
        if chip in ("ina3221", "ina238"):
            devices.append((_device_key(hwmon), chip, hwmon))
    rails: list[Rail] = []
    for _, chip, hwmon in sorted(devices):
        if chip == "ina3221":
            rails.extend(_ina3221(hwmon))
        elif rail := _ina238(hwmon, {rail.name for rail in rails}):
            rails.append(rail)
    return rails + _iio(sys_root)


def board_total(names: Iterable[str]) -> tuple[list[str], str]:
    """The rails that make the board's total, and how a sample names that total (`total_source`)."""
    names = list(names)
    for name in INPUT_RAILS:
        if name in names:
            return [name], name
    return names, "sum of " + " + ".join(names)


def total_power(rails: dict[str, dict]) -> tuple[float, str]:
    """The board's total power (mW) from rail readings, and which rails it is."""
    readable = [name for name, rail in rails.items() if rail.get("mw") is not None]
    chosen, source = board_total(readable)
    return round(sum(rails[name]["mw"] for name in chosen), 1), source
