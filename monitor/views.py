"""Read APIs over stored samples: current stats, history for charts, nodes, and Prometheus text."""

from __future__ import annotations

import hmac
import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import errors
from gateway.auth import MonitoringScope, bearer_token
from monitor import prometheus
from monitor.models import METRICS, Node, Sample, series
from monitor.sampler import node_name

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class MonitorView(APIView):
    permission_classes = [MonitoringScope]


def _node(request: Request) -> Node:
    name = request.query_params.get("node")
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


def _seconds(text: str, param: str) -> float:
    match = _DURATION.match(text.strip())
    if not match or float(match[1]) <= 0:
        raise ValidationError({param: "Expected a duration such as 90, 15m, 6h or 7d."}, code="invalid_duration")
    return float(match[1]) * _UNITS[match[2]]


def _since(text: str, now: datetime) -> datetime:
    # An unencoded "+00:00" arrives as " 00:00".
    moment = parse_datetime(text.strip().replace(" ", "+"))
    if moment is not None:
        return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
    return now - timedelta(seconds=_seconds(text, "since"))


class SystemStats(MonitorView):
    """The latest sample of a node, in the same shape the sampler publishes to the dashboard."""

    def get(self, request: Request) -> Response:
        sample = Sample.objects.filter(node=_node(request)).select_related("node").order_by("-time").first()
        if sample is None:
            raise NotFound("This node has no samples left.", code="no_samples")
        return Response(sample.to_dict())


class MetricHistory(MonitorView):
    def get(self, request: Request) -> Response:
        metric = request.query_params.get("metric", "")
        if metric not in METRICS:
            raise ValidationError({"metric": f"Unknown metric {metric!r}; one of {', '.join(METRICS)}."})
        now = timezone.now()
        since = _since(request.query_params.get("since", "1h"), now)
        step = _seconds(request.query_params["step"], "step") if "step" in request.query_params else 0.0
        node = _node(request)
        return Response(series(node, metric, since, now, step, settings.MONITOR_RAW_RETENTION_HOURS))


class Nodes(MonitorView):
    def get(self, request: Request) -> Response:
        return Response({"nodes": [node.to_dict() for node in Node.objects.all()], "metrics": METRICS})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text; readable with MONITOR_METRICS_TOKEN as a Bearer token, or by a staff session."""
    token = settings.MONITOR_METRICS_TOKEN
    supplied = bearer_token(request.headers.get("Authorization", ""))
    by_token = bool(token and supplied) and hmac.compare_digest(supplied.encode(), token.encode())
    if not (by_token or (request.user.is_authenticated and request.user.is_staff)):
        if not token:
            return errors.APIError(
                403, "Set MONITOR_METRICS_TOKEN to let Prometheus read /metrics.", "permission_error"
            ).response()
        return errors.unauthorized("Invalid or missing metrics token.").response()
    return HttpResponse(prometheus.render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
