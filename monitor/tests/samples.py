"""Rows for the monitor tests: a sample of a named node, its node (and admission row) created on first use."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from gateway.models import NodeAdmission
from monitor.models import Node, Sample


def make_sample(node: str, when: datetime | None = None, **figures: object) -> Sample:
    node_row, _ = Node.objects.get_or_create(name=node)
    detail = figures.pop("detail", {})
    sample = Sample.objects.create(node=node_row, time=when or timezone.now(), detail=detail, **figures)
    Node.objects.filter(pk=node_row.pk).update(last_seen=sample.time)
    NodeAdmission.objects.heard_from(node, sample.time)  # as the sampler does with each sample
    return sample
