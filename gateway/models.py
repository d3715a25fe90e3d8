"""The model registry (models and their llama-server backends), API keys, limits and usage; the request log's model
(gateway.requestlog.models) and the facts a node's sampler measures (gateway.node.models) are registered here too."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from gateway import crypto
from gateway.lifecycle import flags
from gateway.node.identity import node_name
from gateway.node.models import EnergyFact, NodeAdmission  # noqa: F401 (registered here, under the gateway app)
from gateway.requestlog.models import RequestLog  # noqa: F401 (registered here; imported from here as before)


class ModelKind(models.TextChoices):
    CHAT = "chat", "chat"
    VISION = "vision", "vision"
    EMBEDDING = "embedding", "embedding"
    RERANK = "rerank", "rerank"


# The kinds that generate text, which an audio projector can also make hear (LLMModel.audio).
GENERATING_KINDS = (ModelKind.CHAT, ModelKind.VISION)


class PromptFormat(models.TextChoices):
    SERVER = "server", "server (the GGUF's own template, via /v1/chat/completions)"
    CHATML = "chatml", "ChatML (Qwen)"
    DEEPSEEK_R1 = "deepseek-r1", "DeepSeek R1"
    GEMMA = "gemma", "Gemma"
    LLAMA3 = "llama3", "Llama 3"


class LLMModelQuerySet(models.QuerySet):
    def enabled(self) -> LLMModelQuerySet:
        return self.filter(enabled=True)


class LLMModel(models.Model):
    """A model clients ask for by id (or alias), served by one or more llama-server backends."""

    model_id = models.CharField("id", max_length=200, unique=True, help_text="The id clients send as `model`.")
    aliases = models.JSONField(default=list, blank=True, help_text='Other ids accepted, e.g. ["qwen"].')
    kind = models.CharField(max_length=20, choices=ModelKind.choices, default=ModelKind.CHAT)
    audio = models.BooleanField(
        "accepts audio",
        default=False,
        help_text="Serves /v1/audio/transcriptions: a chat or vision model whose projector (--mmproj) has an audio "
        "encoder.",
    )
    prompt_format = models.CharField(max_length=20, choices=PromptFormat.choices, default=PromptFormat.SERVER)
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    default_params = models.JSONField(
        default=dict, blank=True, help_text='Sampling defaults a request may override, e.g. {"temperature": 0.7}.'
    )
    max_tokens_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Upper bound on max_tokens; also the default when a request omits it."
    )
    context_length = models.PositiveIntegerField(null=True, blank=True)
    request_timeout = models.FloatField(default=120.0, help_text="Seconds to wait for the backend.")
    owned_by = models.CharField(max_length=100, default="local")
    created = models.DateTimeField(default=timezone.now)

    objects = LLMModelQuerySet.as_manager()

    class Meta:
        verbose_name = "model"
        ordering = ["model_id"]

    def __str__(self) -> str:
        return self.model_id

    def clean(self) -> None:
        if self.audio and self.kind not in GENERATING_KINDS:
            raise ValidationError(
                {"audio": f"Only a chat or vision model can accept audio, not this {self.kind} model."}
            )


class Backend(models.Model):
    """One llama-server serving a model: external (a URL, started by someone else) or managed (started on demand by
    the supervisor of its node, gateway.lifecycle, from the GGUF and flags stored here)."""

    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="backends")
    base_url = models.URLField(blank=True, help_text="e.g. http://127.0.0.1:8081; empty for a managed backend.")
    weight = models.PositiveIntegerField(default=1)
    enabled = models.BooleanField(default=True)
    api_key = models.CharField(
        max_length=200, blank=True,
        help_text="An external llama-server's --api-key, if it has one (a managed one gets a new random key at each start).",
    )  # fmt: skip
    max_concurrent = models.PositiveIntegerField(
        default=0, help_text="Requests in flight at once from this process; 0 means no limit."
    )
    managed = models.BooleanField(
        default=False, help_text="Started on demand by the node's supervisor (`manage.py supervise`), within memory."
    )
    node = models.CharField(
        max_length=100,
        blank=True,
        help_text="The node it runs on (managed: whose supervisor runs it); empty = this machine's node for a managed "
        "backend or an external one at a loopback URL.",
    )
    gguf_path = models.CharField("GGUF", max_length=1000, blank=True, help_text="The model file (--model).")
    mmproj_path = models.CharField(
        "projector",
        max_length=1000,
        blank=True,
        help_text="Projector GGUF (--mmproj): the image or audio encoder of a vision or audio model.",
    )
    ctx_size = models.PositiveIntegerField(default=4096, help_text="--ctx-size: context shared by the slots.")
    parallel = models.PositiveSmallIntegerField(default=2, help_text="--parallel: requests served at once.")
    gpu_layers = models.IntegerField(
        null=True, blank=True, help_text="--n-gpu-layers (99 = all on a Jetson); empty = llama-server's default."
    )
    llama_args = models.CharField(
        max_length=1000,
        blank=True,
        help_text='Extra llama-server flags that tune compute or sampling only, e.g. "--flash-attn on --pooling last".',
    )
    cache_ram_mb = models.PositiveIntegerField(
        "prompt cache MiB",
        null=True,
        blank=True,
        help_text="--cache-ram: host memory for saved prompts, counted in its memory; 0 = off; empty = "
        "MODEL_CACHE_RAM_MB (0 for an embedding or rerank model).",
    )
    idle_ttl = models.PositiveIntegerField(
        "idle TTL",
        null=True,
        blank=True,
        help_text="Seconds idle before it is stopped; empty = MODEL_IDLE_TTL, 0 = never.",
    )
    pinned = models.BooleanField(
        default=False, help_text="Loaded when the supervisor starts, never evicted nor unloaded when idle."
    )

    class Meta:
        ordering = ["model", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "base_url"], condition=models.Q(managed=False), name="unique_backend_per_model"
            ),
            # One process per model and node: that is what the supervisor guarantees.
            models.UniqueConstraint(
                fields=["model", "node"], condition=models.Q(managed=True), name="one_managed_backend_per_node"
            ),
        ]

    def __str__(self) -> str:
        where = f"managed on {self.node}" if self.managed else self.base_url
        return f"{self.model.model_id} → {where}"

    def clean(self) -> None:
        try:
            flags.parse(self.llama_args)
        except flags.FlagError as exc:
            raise ValidationError({"llama_args": str(exc)}) from None
        if self.managed:
            self.fill_node()
            if not self.gguf_path:
                raise ValidationError({"gguf_path": "A managed backend needs its GGUF file."})
            if self.base_url:
                raise ValidationError({"base_url": "A managed backend has no URL: its supervisor picks the port."})
            if self.api_key:
                raise ValidationError(
                    {"api_key": "A managed backend's key is its supervisor's: a new random one at each start."}
                )
        elif not self.base_url:
            raise ValidationError({"base_url": "An external backend needs its URL (or tick “managed”)."})

    @property
    def prompt_cache_mb(self) -> int:
        """MiB its llama-server may fill with saved prompts: its own limit; else none for an embedding or rerank model
        (llama-server caches only completions' prompts), MODEL_CACHE_RAM_MB for the others."""
        if self.cache_ram_mb is not None:
            return self.cache_ram_mb
        return settings.MODEL_CACHE_RAM_MB if self.model.kind in GENERATING_KINDS else 0

    def fill_node(self) -> None:
        if not self.node:
            self.node = node_name()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.managed:
            self.fill_node()
        super().save(*args, **kwargs)


class ModelState(models.TextChoices):
    STOPPED = "stopped", "stopped"
    STARTING = "starting", "starting"
    READY = "ready", "ready"
    STOPPING = "stopping", "stopping"
    FAILED = "failed", "failed"


class ManagedRuntime(models.Model):
    """What the supervisor knows about a managed backend's process; written by the supervisor alone, on every
    state change (counters at most once a second), for readers without a connection to it."""

    backend = models.OneToOneField(Backend, on_delete=models.CASCADE, primary_key=True, related_name="runtime")
    state = models.CharField(max_length=10, choices=ModelState.choices, default=ModelState.STOPPED)
    since = models.DateTimeField(default=timezone.now)
    pid = models.PositiveIntegerField(null=True, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    estimated_bytes = models.BigIntegerField(null=True, blank=True, help_text="From the GGUF header.")
    estimate_detail = models.JSONField(
        default=dict, blank=True, help_text="weights, kv, compute, prompt_cache (bytes)."
    )
    measured_bytes = models.BigIntegerField(null=True, blank=True, help_text="Seen once ready; preferred next time.")
    peak_bytes = models.BigIntegerField(null=True, blank=True, help_text="The most it was seen holding (VmHWM + GPU).")
    reserved_bytes = models.BigIntegerField(null=True, blank=True, help_text="What the budget counts for it.")
    oom_kills = models.PositiveIntegerField(default=0, help_text="Times the OOM killer ended it (recent ones).")
    measured_for = models.CharField(
        max_length=64, blank=True, help_text="Digest of the command line the measurement belongs to."
    )
    in_flight = models.PositiveIntegerField(default=0)
    waiting = models.PositiveIntegerField(default=0)
    last_used = models.DateTimeField(null=True, blank=True)
    unload_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True, help_text="How long its last load took.")
    saved_caches = models.PositiveIntegerField(default=0, help_text="Prompt caches saved on disk for it.")
    saved_cache_bytes = models.BigIntegerField(default=0, help_text="Their size on disk.")

    class Meta:
        verbose_name = "managed model state"

    def __str__(self) -> str:
        return f"{self.backend}: {self.state}"


class Supervisor(models.Model):
    """A node's supervisor: where gateway processes reach it, and its memory budget."""

    node = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(help_text="Its TCP port, for other nodes' gateways; 0 while not listening.")
    socket = models.CharField(max_length=200, blank=True, help_text="Its Unix socket, for this node's gateways.")
    pid = models.PositiveIntegerField(null=True)
    started = models.DateTimeField(default=timezone.now)
    heartbeat = models.DateTimeField(default=timezone.now)
    budget_bytes = models.BigIntegerField(null=True)
    budget_source = models.CharField(max_length=200, blank=True)
    used_bytes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.node} ({self.host}:{self.port})"


class APIKeyManager(models.Manager["APIKey"]):
    def create_key(self, **fields: object) -> tuple[APIKey, str]:
        """Create a key; the plaintext is returned here and never stored."""
        plaintext, prefix, digest = crypto.new_key()
        key = self.create(prefix=prefix, hashed_key=digest, **fields)
        return key, plaintext


class APIKey(models.Model):
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False, help_text="A revoked key cannot be restored.")
    allowed_models = models.ManyToManyField(
        LLMModel, blank=True, related_name="+", help_text="Empty means every model."
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight at once.")
    scope_logs = models.BooleanField(default=False, help_text="May read request logs and usage (/api/logs).")
    scope_monitoring = models.BooleanField(default=False, help_text="May read system metrics (/api/metrics).")
    scope_models = models.BooleanField(
        default=False, help_text="May see managed models and load or unload them (/api/models/running)."
    )
    store_previews = models.BooleanField(
        null=True, blank=True, help_text="Store prompt/completion previews; empty follows the global setting."
    )

    objects = APIKeyManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > timezone.now())


class RateWindow(models.Model):
    """Requests and tokens a key used in one minute; shared by every worker process (when there is no Redis)."""

    api_key = models.ForeignKey(APIKey, on_delete=models.CASCADE, related_name="+")
    minute = models.BigIntegerField(help_text="Unix time // 60")
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "minute"], name="unique_rate_window")]


class InFlight(models.Model):
    """A request a key has in flight; expires on its own so a crashed worker cannot hold a slot forever."""

    api_key = models.ForeignKey(APIKey, on_delete=models.CASCADE, related_name="+")
    request_id = models.CharField(max_length=32, unique=True)
    expires = models.DateTimeField(db_index=True)


class UsageBucket(models.Model):
    """Usage of one model or key in one closed hour or day, computed once from RequestLog rows (gateway.requestlog.usage).

    A bucket that has been computed has a row with `who` "*" (its totals), even when no request fell in it.
    """

    group = models.CharField(max_length=4)  # "hour" or "day"
    by = models.CharField(max_length=5)  # "model" or "key"
    start = models.DateTimeField()
    who = models.CharField(max_length=200, help_text='Model id, key id ("" for no key), or "*" for the total.')
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    avg_latency_ms = models.FloatField(null=True)
    p95_latency_ms = models.FloatField(null=True)
    energy_mj = models.FloatField(default=0, help_text="Energy of the requests measured.")
    energy_tokens = models.BigIntegerField(default=0, help_text="Completion tokens of the requests with an energy.")
    # Prompt caches: requests by where their prompt's start came from, the tokens served from a cache, and the time
    # spent reading the rest with the tokens read (their ratio prices the cached tokens; gateway.requestlog.usage).
    cache_restored = models.PositiveIntegerField(default=0)
    cache_live = models.PositiveIntegerField(default=0)
    cache_none = models.PositiveIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    read_ms = models.FloatField(default=0, help_text="Prompt reading time of the requests that say it.")
    read_tokens = models.BigIntegerField(default=0, help_text="Prompt tokens read (not cached) by those requests.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "by", "start", "who"], name="unique_usage_bucket")]

    def __str__(self) -> str:
        return f"{self.group} {self.start:%Y-%m-%d %H:%M} {self.by}={self.who}"
