"""The sampler merges its sources into one row per node with headline columns, surviving a broken source."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.collectors.jetson import JetsonCollector
from monitor.collectors.linux import LinuxCollector
from monitor.collectors.llama import LlamaCollector
from monitor.models import Node, Sample
from monitor.sampler import Sampler
from monitor.tests.jetson_tree import agx_orin, fake_nvpmodel


class Broken:
    def collect(self) -> dict:
        raise OSError("sensor went away")


def orin_sampler(tmp_path: Path, name: str = "orin-1") -> Sampler:
    sys, proc, etc = agx_orin(tmp_path)
    collectors = [
        LinuxCollector([str(tmp_path)], sys),
        Broken(),
        JetsonCollector(sys, proc, etc, nvpmodel=fake_nvpmodel(tmp_path, "MAXN")),
    ]
    return Sampler(name, collectors, LlamaCollector(timeout=1), backends=list)


@pytest.mark.django_db
def test_it_stores_one_row_with_the_headline_figures(tmp_path: Path) -> None:
    sampler = orin_sampler(tmp_path)
    sample = sampler.store(sampler.collect_system())

    stored = Sample.objects.select_related("node").get(pk=sample.pk)
    assert stored.node.name == "orin-1"
    assert stored.gpu_percent == 52.3
    assert stored.gpu_mem_used == 1024**3
    assert stored.power_mw == 12000.0
    assert stored.temp_max == 53.0
    assert stored.cpu_percent is not None and stored.ram_used > 0
    assert stored.detail["power"]["rails"]["VDD_CPU_CV"]["mw"] == 2000.0
    assert stored.detail["disks"][0]["mount"] == str(tmp_path)


@pytest.mark.django_db
def test_it_keeps_board_facts_on_the_node_not_on_each_sample(tmp_path: Path) -> None:
    sampler = orin_sampler(tmp_path)
    first = sampler.store(sampler.collect_system())
    second = sampler.store(sampler.collect_system())

    node = Node.objects.get(name="orin-1")
    assert (node.board_model, node.l4t_release, node.power_mode) == (
        "NVIDIA Jetson AGX Orin Developer Kit",
        "36.4.4",
        "MAXN",
    )
    assert node.last_seen == second.time
    assert "board" not in first.detail
    assert Sample.objects.filter(node=node).count() == 2


@pytest.mark.django_db
def test_it_stores_a_sample_when_every_source_fails() -> None:
    sampler = Sampler("bare", [Broken()], LlamaCollector(timeout=1), backends=list)
    sample = sampler.store(sampler.collect_system())
    assert sample.detail == {}
    assert sample.cpu_percent is None


def test_it_names_the_node_after_the_setting_or_the_host(settings: object) -> None:
    import socket

    settings.MONITOR_NODE_NAME = ""  # type: ignore[attr-defined]
    assert Sampler(collectors=[], llama=LlamaCollector(timeout=1)).name == socket.gethostname()
    settings.MONITOR_NODE_NAME = "orin-rack-2"  # type: ignore[attr-defined]
    assert Sampler(collectors=[], llama=LlamaCollector(timeout=1)).name == "orin-rack-2"
