"""The request log's row: one per API request, written by the request log's writer and never updated."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, FloatField, Func, OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from gateway.node.models import EnergyFact


def facts_of_request() -> QuerySet[EnergyFact]:
    """The energy facts of the outer row's request: usually one, one per lease when a request held a model twice."""
    return EnergyFact.objects.filter(request_id=OuterRef("request_id")).order_by()


def energy_of_request(figure: str) -> Subquery:
    """The sum of a figure (gross_mj or net_mj) over the outer row's facts; None when its node's sampler measured
    none (yet)."""
    # SUM without GROUP BY: one row, NULL when there is no fact.
    total = Func(F(figure), function="SUM", output_field=FloatField())
    return Subquery(facts_of_request().annotate(total=total).values("total"), output_field=FloatField())


def measured() -> Exists:
    """Whether the outer row's request has an energy fact."""
    return Exists(facts_of_request())


def energy_by_request(request_ids: Iterable[str]) -> dict[str, dict[str, float | None]]:
    """Each request's `energy_mj` and `energy_net_mj`, in one query: for a page of rows read without them."""
    facts = EnergyFact.objects.filter(request_id__in=set(request_ids)).order_by().values("request_id")
    totals = facts.annotate(energy_mj=Sum("gross_mj"), energy_net_mj=Sum("net_mj"))
    return {total.pop("request_id"): total for total in totals}


PROMPT_CACHE_CHOICES = [
    ("restored", "restored from disk"),
    ("live", "reused from memory"),
    ("none", "read from scratch"),
]


class RequestLogQuerySet(models.QuerySet["RequestLog"]):
    def with_energy(self) -> RequestLogQuerySet:
        """Each row with its request's energy as `energy_mj` and `energy_net_mj`, looked up in the same query."""
        return self.annotate(energy_mj=energy_of_request("gross_mj"), energy_net_mj=energy_of_request("net_mj"))


class RequestLog(models.Model):
    """One API request, whatever its outcome; written in batches off the request path (gateway.requestlog.writer).
    Its energy is not a column: the node's sampler writes it as facts of its own (`with_energy()` joins them)."""

    request_id = models.CharField(max_length=32, db_index=True)
    created = models.DateTimeField(default=timezone.now)
    api_key = models.ForeignKey("gateway.APIKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key_name = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.CharField(max_length=100)
    method = models.CharField(max_length=10, default="POST")
    model_requested = models.CharField(max_length=200, blank=True)
    model_used = models.CharField(max_length=200, blank=True)
    backend = models.CharField(max_length=300, blank=True)
    status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=100, blank=True)
    error_code = models.CharField(max_length=100, blank=True, help_text="The error's code, e.g. device_overheated.")
    error_message = models.TextField(blank=True)
    stream = models.BooleanField(default=False)
    latency_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField("time to first token (ms)", null=True, blank=True)
    cold_start_ms = models.FloatField(
        "cold start (ms)", null=True, blank=True, help_text="Time spent waiting for the model to be loaded."
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    prompt_cache = models.CharField(
        max_length=10, blank=True, choices=PROMPT_CACHE_CHOICES,
        help_text="Where the prompt's start was read from: a cache restored from disk, the model's memory (a live slot "
        "or its RAM cache), or nowhere (read from scratch). Blank when the backend does not say.",
    )  # fmt: skip
    cached_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompt tokens served from a cache instead of being read."
    )
    prompt_ms = models.FloatField(
        "prompt reading (ms)", null=True, blank=True, help_text="Time the model spent reading the rest of the prompt."
    )
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    client_gone = models.BooleanField(default=False, help_text="The client went away before the answer ended.")
    prompt_preview = models.TextField(blank=True)
    completion_preview = models.TextField(blank=True)

    objects = RequestLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["created"]),
            models.Index(fields=["model_used", "created"]),
            models.Index(fields=["model_requested", "created"]),
            models.Index(fields=["api_key", "created"]),
            models.Index(fields=["status", "created"]),
            models.Index(fields=["endpoint", "created"]),
        ]

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.endpoint} {self.status}"
