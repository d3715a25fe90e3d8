"""Read APIs over stored samples: current stats, history for charts, nodes."""

from __future__ import annotations

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import params
from gateway.auth import MonitoringScope
from gateway.node.identity import node_name
from gateway.node.models import NodeAdmission
from monitor.models import METRICS, Node, Sample, series

NODE = params.Param("node", "Node name (default: this machine's node, else the one that reported last).")


class MonitorView(APIView):
    permission_classes = [MonitoringScope]


def _node(name: str | None) -> Node:
    if name:
        node = Node.objects.filter(name=name).first()
        if node is None:
            raise NotFound(f"No node named {name!r} has been sampled.", code="node_not_found")
        return node
    # By default this machine's node, else whichever reported last.
    node = (
        Node.objects.filter(name=node_name()).first()
        or Node.objects.order_by(F("last_seen").desc(nulls_last=True)).first()
    )
    if node is None:
        raise NotFound("No samples yet: is `manage.py monitor` running?", code="no_samples")
    return node


class SystemStats(MonitorView):
    """The latest sample of a node, in the same shape the sampler publishes to the dashboard."""

    parameters = (NODE,)

    def get(self, request: Request) -> Response:
        query = params.read(request.query_params, self.parameters)
        sample = Sample.objects.filter(node=_node(query["node"])).select_related("node").order_by("-time").first()
        if sample is None:
            raise NotFound("This node has no samples left.", code="no_samples")
        return Response(sample.to_dict())


class MetricHistory(MonitorView):
    parameters = (
        params.Choice("metric", "A headline figure.", choices=tuple(METRICS), required=True),
        NODE,
        params.TimeOrAgo("since", "How far back: a duration (90, 15m, 6h, 7d) or an ISO 8601 time.", default="1h"),
        params.Duration("step", "Bucket size (default, and at least: what keeps a series within 500 points)."),
    )

    def get(self, request: Request) -> Response:
        query = params.read(request.query_params, self.parameters)
        node = _node(query["node"])
        now = timezone.now()
        since, step = params.back_from(now, query["since"]), query["step"] or 0.0
        return Response(series(node, query["metric"], since, now, step, settings.MONITOR_RAW_RETENTION_HOURS))


class Nodes(MonitorView):
    parameters = ()

    def get(self, request: Request) -> Response:
        admissions = NodeAdmission.objects.in_bulk(field_name="node")
        nodes = [node.to_dict(admissions.get(node.name)) for node in Node.objects.all()]
        return Response({"nodes": nodes, "metrics": METRICS})
