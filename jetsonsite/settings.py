"""Settings for the Jetson LLM gateway: every value comes from the environment (or a `.env` file)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

# State the app creates at run time (SQLite database, model files) lives here.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# Where the node's gateway processes keep their request counters (prometheus_client's multiprocess mode: one set of
# files per process, summed by every scrape). One directory per node, shared by all its gateway processes; the
# node's sampler counts in a subdirectory of its own (gateway.metrics.sampler_directory).
PROMETHEUS_MULTIPROC_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default="") or VAR_DIR / "prometheus")
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
# prometheus_client reads it from the environment when first imported (gateway.metrics checks it did), and again as
# a process opens its files (the sampler points it at its own directory first).
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)

DEBUG = env.bool("DEBUG", default=False)

_INSECURE_KEY_MARKER = "django-insecure"
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if DEBUG:
    SECRET_KEY = SECRET_KEY or f"{_INSECURE_KEY_MARKER}-debug-only"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]"]
else:
    # Refuse to start a production process on a guessable key or an open Host header.
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith(_INSECURE_KEY_MARKER):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random string of at least 50 characters when DEBUG is off"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Served behind TLS (directly or through a proxy that sets X-Forwarded-Proto): secure cookies, HSTS, redirects.
# The header is believed only from TRUSTED_PROXIES (jetsonsite.middleware.ForwardedProtoMiddleware).
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes from supervisors arrive over plain HTTP on localhost.
SECURE_REDIRECT_EXEMPT = [r"^livez$", r"^readyz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "gateway",
    "monitor",
    "dashboard",
]

MIDDLEWARE = [
    "jetsonsite.middleware.ForwardedProtoMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "jetsonsite.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jetsonsite.urls"
ASGI_APPLICATION = "jetsonsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the sampler, the log writer and web requests share one file without "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # A file, not memory, so that a live server in another process sees the tests' data; one per test run.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
LOGIN_URL = "admin:login"

REST_FRAMEWORK = {
    # The key class first: DRF takes the WWW-Authenticate header from it, so a missing key gets 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "gateway.auth.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "gateway.drf.openai_exception_handler",
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Local llama-server (the small model on any machine; the operator's own build on a Jetson) ---
LLAMA_SERVER_BIN = env.str("LLAMA_SERVER_BIN", default="")
LLAMA_MODEL_PATH = env.str("LLAMA_MODEL_PATH", default="")
LLAMA_MODEL_ID = env.str("LLAMA_MODEL_ID", default="gemma-3-270m")
# Address managed llama-servers listen on (their ports are picked free); 0.0.0.0 lets other nodes' gateways reach them.
LLAMA_HOST = env.str("LLAMA_HOST", default="127.0.0.1")
LLAMA_CTX_SIZE = env.int("LLAMA_CTX_SIZE", default=4096)
LLAMA_PARALLEL = env.int("LLAMA_PARALLEL", default=2)
LLAMA_EXTRA_ARGS = env.str("LLAMA_EXTRA_ARGS", default="")
GATEWAY_HOST = env.str("GATEWAY_HOST", default="127.0.0.1")
GATEWAY_PORT = env.int("GATEWAY_PORT", default=9000)

# --- Gateway ---
# How long a process trusts its cached copy of an API key (revocation takes effect within this time).
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=10.0)
# How long a process trusts its cached copy of the model registry (admin changes take effect within this time).
REGISTRY_CACHE_SECONDS = env.float("REGISTRY_CACHE_SECONDS", default=5.0)
# How long a backend that refused a connection or failed with 5xx stays out of rotation.
BACKEND_COOLOFF_SECONDS = env.float("BACKEND_COOLOFF_SECONDS", default=10.0)
# Largest request body accepted (413 beyond); images arrive base64-encoded inside the JSON.
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=20 * 1024 * 1024)
# Largest decoded image in a data: URI.
MAX_IMAGE_BYTES = env.int("MAX_IMAGE_BYTES", default=10 * 1024 * 1024)
# Largest audio file a transcription request may upload (413 beyond; MAX_REQUEST_BYTES bounds the whole body first).
MAX_AUDIO_BYTES = env.int("MAX_AUDIO_BYTES", default=25 * 1024 * 1024)
# Hosts whose http(s) image URLs may be passed to a vision backend (which fetches them itself); empty = none.
IMAGE_URL_ALLOWED_HOSTS = env.list("IMAGE_URL_ALLOWED_HOSTS", default=[])
# Seconds each backend probe of GET /health may take.
HEALTH_TIMEOUT = env.float("HEALTH_TIMEOUT", default=2.0)
# Seconds between SSE keep-alive comments sent to the client while the backend is silent.
SSE_KEEPALIVE_SECONDS = env.float("SSE_KEEPALIVE_SECONDS", default=15.0)
# Django reads the whole body before the view; the view enforces MAX_REQUEST_BYTES with OpenAI's error shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

# --- Model lifecycle: the supervisor (`manage.py supervise`) starts managed models on demand, within memory ---
# Where the supervisor listens; gateway processes find it through the address it records in the database.
SUPERVISOR_HOST = env.str("SUPERVISOR_HOST", default="127.0.0.1")
SUPERVISOR_PORT = env.int("SUPERVISOR_PORT", default=9010)
# Seconds a managed model may stay idle before it is stopped (a model's own idle TTL wins; 0 = never).
MODEL_IDLE_TTL = env.float("MODEL_IDLE_TTL", default=600.0)
# Requests that may wait for one model's load at once; beyond it 429.
MODEL_QUEUE_LENGTH = env.int("MODEL_QUEUE_LENGTH", default=32)
# Seconds a request waits for its model (eviction and load); also the longest a load may take.
MODEL_LOAD_TIMEOUT = env.float("MODEL_LOAD_TIMEOUT", default=300.0)
# Memory the supervisor may fill with models, in MiB; empty = measured when it starts (see the README).
_budget = env.str("MODEL_MEMORY_BUDGET_MB", default="").strip()
try:
    MODEL_MEMORY_BUDGET_MB = float(_budget) if _budget else None
except ValueError:
    raise ImproperlyConfigured(f"MODEL_MEMORY_BUDGET_MB={_budget!r} is not a number of MiB") from None
# MiB of MemAvailable left to the system on unified-memory machines (Jetson, CPU only).
MODEL_MEMORY_RESERVE_MB = env.int("MODEL_MEMORY_RESERVE_MB", default=1024)
# MiB of host memory each managed llama-server may fill with its prompt cache (--cache-ram; a backend's own
# cache_ram_mb wins; embedding models get none; 0 = off), counted in the memory estimate. llama-server's default is
# 8192 per process, beyond an 8 GB board's whole budget. 256 keeps a few thousand tokens of a 7B model's prompts
# (Qwen2.5-7B's KV is 56 KiB a token in f16: about 4,700), and a 7B Q4_K_M with ctx 4096 x 2 (4929 MiB) still fits
# an 8 GB Orin Nano's budget of about 5.3 GiB with it.
MODEL_CACHE_RAM_MB = env.int("MODEL_CACHE_RAM_MB", default=256)
# Seconds between SIGTERM and SIGKILL when a llama-server is stopped.
MODEL_STOP_GRACE = env.float("MODEL_STOP_GRACE", default=10.0)
# Seconds a supervisor told to stop (SIGTERM) lets generations in flight finish before it stops their models; with
# MODEL_STOP_GRACE it must fit in the supervisor unit's TimeoutStopSec (60 s) with the prompt caches' saves (at most 10 s).
SUPERVISOR_DRAIN_SECONDS = env.float("SUPERVISOR_DRAIN_SECONDS", default=20.0)
# The supervisor's Unix socket, which this node's gateway processes use (in a folder only the service user can open);
# empty: none (this node's gateways then use TCP, as other nodes' do).
_socket = env.str("SUPERVISOR_SOCKET", default=str(VAR_DIR / "run" / "supervisor.sock"))
SUPERVISOR_SOCKET = Path(_socket) if _socket else None
# Bytes of a managed llama-server's log (VAR_DIR/llama/<model>.log) before it is rotated (two older files are kept).
LLAMA_LOG_MAX_BYTES = env.int("LLAMA_LOG_MAX_BYTES", default=10 * 1024 * 1024)
# Seconds a model whose llama-server failed to load refuses requests before it is tried again.
MODEL_FAILED_RETRY_SECONDS = env.float("MODEL_FAILED_RETRY_SECONDS", default=60.0)
# Prompt caches saved to disk when a managed model stops and restored when its conversations come back
# (gateway.lifecycle.kvcache), in VAR_DIR/kv: MiB of disk they may fill (0 = none are saved; the least recently used
# go first), MiB they may write per hour (flash storage wears), the fewest tokens a slot must hold to be saved, and
# the longest a save may take when a request waits for the memory it frees (milliseconds; longer saves are skipped).
KV_CACHE_DISK_MB = env.int("KV_CACHE_DISK_MB", default=2048)
KV_CACHE_WRITE_MB_PER_HOUR = env.int("KV_CACHE_WRITE_MB_PER_HOUR", default=4096)
KV_CACHE_MIN_TOKENS = env.int("KV_CACHE_MIN_TOKENS", default=256)
KV_CACHE_SAVE_WAIT_MS = env.float("KV_CACHE_SAVE_WAIT_MS", default=1000.0)
# Saved caches serve only the API key whose conversation they hold; true lets any key's identical prompt use them.
KV_CACHE_SHARED = env.bool("KV_CACHE_SHARED", default=False)
# Seconds between sweeps of the saved caches: those of revoked, expired or deleted keys and of changed models go.
KV_CACHE_SWEEP_SECONDS = env.float("KV_CACHE_SWEEP_SECONDS", default=60.0)
if min(KV_CACHE_DISK_MB, KV_CACHE_WRITE_MB_PER_HOUR, KV_CACHE_SAVE_WAIT_MS) < 0 or KV_CACHE_MIN_TOKENS < 1:
    raise ImproperlyConfigured(
        "KV_CACHE_DISK_MB, KV_CACHE_WRITE_MB_PER_HOUR and KV_CACHE_SAVE_WAIT_MS must not be negative, "
        "KV_CACHE_MIN_TOKENS at least 1"
    )
if KV_CACHE_SWEEP_SECONDS <= 0:
    raise ImproperlyConfigured("KV_CACHE_SWEEP_SECONDS must be positive")
if MODEL_QUEUE_LENGTH < 1 or MODEL_LOAD_TIMEOUT <= 0 or MODEL_STOP_GRACE < 0 or MODEL_IDLE_TTL < 0:
    raise ImproperlyConfigured(
        "MODEL_QUEUE_LENGTH and MODEL_LOAD_TIMEOUT must be positive, MODEL_STOP_GRACE and MODEL_IDLE_TTL not negative"
    )
if SUPERVISOR_DRAIN_SECONDS < 0 or LLAMA_LOG_MAX_BYTES < 64 * 1024:
    raise ImproperlyConfigured("SUPERVISOR_DRAIN_SECONDS must not be negative and LLAMA_LOG_MAX_BYTES at least 64 KiB")
if MODEL_CACHE_RAM_MB < 0:
    raise ImproperlyConfigured("MODEL_CACHE_RAM_MB must be a number of MiB, 0 or more (0 = no prompt cache)")
if MODEL_MEMORY_BUDGET_MB is not None and not MODEL_MEMORY_BUDGET_MB > 0:
    raise ImproperlyConfigured("MODEL_MEMORY_BUDGET_MB must be a positive number of MiB (or empty)")

# --- Monitor ---
# Name this machine's samples are stored under; several Jetsons can share one database. Empty = the hostname.
MONITOR_NODE_NAME = env.str("MONITOR_NODE_NAME", default="")
MONITOR_INTERVAL = env.float("MONITOR_INTERVAL", default=2.0)
if MONITOR_INTERVAL <= 0:
    raise ImproperlyConfigured("MONITOR_INTERVAL must be a positive number of seconds")
# Model files usually live on an NVMe, not on `/`: list every mount point worth watching.
MONITOR_DISKS = env.list("MONITOR_DISKS", default=["/"])
# Roots of the files the collectors read; tests point them at a fake tree.
MONITOR_SYS_ROOT = env.str("MONITOR_SYS_ROOT", default="/sys")
MONITOR_PROC_ROOT = env.str("MONITOR_PROC_ROOT", default="/proc")
MONITOR_ETC_ROOT = env.str("MONITOR_ETC_ROOT", default="/etc")
MONITOR_TEGRASTATS_LOG = env.str("MONITOR_TEGRASTATS_LOG", default="")
MONITOR_BACKEND_TIMEOUT = env.float("MONITOR_BACKEND_TIMEOUT", default=1.0)
MONITOR_RAW_RETENTION_HOURS = env.float("MONITOR_RAW_RETENTION_HOURS", default=24.0)
MONITOR_ROLLUP_RETENTION_DAYS = env.float("MONITOR_ROLLUP_RETENTION_DAYS", default=30.0)
if MONITOR_RAW_RETENTION_HOURS <= 0 or MONITOR_ROLLUP_RETENTION_DAYS <= 0:
    raise ImproperlyConfigured("MONITOR_RAW_RETENTION_HOURS and MONITOR_ROLLUP_RETENTION_DAYS must be positive")
# Bearer token Prometheus sends to GET /metrics; empty = only staff sessions may read it.
MONITOR_METRICS_TOKEN = env.str("MONITOR_METRICS_TOKEN", default="")
# Readings per second of the board's total power, integrated into energy (a request's share needs >= 10).
ENERGY_SAMPLE_HZ = env.float("ENERGY_SAMPLE_HZ", default=10.0)
if not 10 <= ENERGY_SAMPLE_HZ <= 1000:
    raise ImproperlyConfigured("ENERGY_SAMPLE_HZ must be between 10 and 1000 readings per second")

# --- Admission by heat and power (monitor.admission) ---
# The hottest readable thermal zone's limits (°C): soft queues generation requests one at a time per model, hard
# refuses them with 503. Empty = derived from the board's own trip points (see the README).
ADMISSION_TEMP_SOFT_C = env.float("ADMISSION_TEMP_SOFT_C", default=None)
ADMISSION_TEMP_HARD_C = env.float("ADMISSION_TEMP_HARD_C", default=None)
# How far (°C) a zone must cool below a limit to leave it.
ADMISSION_RECOVER_C = env.float("ADMISSION_RECOVER_C", default=5.0)
# The board's total power (W) over which, for 3 consecutive readings, generation requests are refused. Empty = none.
ADMISSION_POWER_LIMIT_W = env.float("ADMISSION_POWER_LIMIT_W", default=None)
# Seconds between the sampler's looks at the thermal zones.
ADMISSION_INTERVAL = env.float("ADMISSION_INTERVAL", default=1.0)
if ADMISSION_RECOVER_C < 0 or ADMISSION_INTERVAL <= 0:
    raise ImproperlyConfigured("ADMISSION_RECOVER_C must not be negative and ADMISSION_INTERVAL must be positive")
# Seconds without readings after which admission fails open: a thermal zone or power sensor silent that long no longer
# holds the sampler's decision in soft or hard, a sampler silent that long no longer holds its node's (readers show
# "stale", the supervisor admits normally). Default: 10 s, or three of the slower loop's intervals if that is longer.
ADMISSION_STALE_SECONDS = env.float("ADMISSION_STALE_SECONDS", default=None)
if ADMISSION_STALE_SECONDS is None:
    ADMISSION_STALE_SECONDS = max(10.0, 3 * max(MONITOR_INTERVAL, ADMISSION_INTERVAL))
if max(MONITOR_INTERVAL, ADMISSION_INTERVAL) >= ADMISSION_STALE_SECONDS:
    raise ImproperlyConfigured("ADMISSION_STALE_SECONDS must exceed both MONITOR_INTERVAL and ADMISSION_INTERVAL")

# --- Request logs ---
# Record API requests in the database (off only to measure what logging costs).
LOG_ENABLED = env.bool("LOG_ENABLED", default=True)
# Store a truncated prompt/completion preview with each row (a key may override this either way).
LOG_PREVIEWS = env.bool("LOG_PREVIEWS", default=False)
LOG_PREVIEW_CHARS = env.int("LOG_PREVIEW_CHARS", default=500)
# Proxies whose X-Forwarded-For is believed (IPs or CIDRs); from anyone else, REMOTE_ADDR is the client.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network") from None
# Rows waiting for the database at most; beyond it new rows are dropped and counted.
LOG_BUFFER_SIZE = env.int("LOG_BUFFER_SIZE", default=10000)
# Seconds between batch writes (a full batch is written at once).
LOG_FLUSH_INTERVAL = env.float("LOG_FLUSH_INTERVAL", default=0.5)
# Default age beyond which `manage.py prunelogs` deletes rows.
LOG_RETENTION_DAYS = env.int("LOG_RETENTION_DAYS", default=30)
if LOG_BUFFER_SIZE < 1 or LOG_FLUSH_INTERVAL <= 0 or LOG_RETENTION_DAYS < 1 or LOG_PREVIEW_CHARS < 1:
    raise ImproperlyConfigured(
        "LOG_BUFFER_SIZE, LOG_FLUSH_INTERVAL, LOG_RETENTION_DAYS and LOG_PREVIEW_CHARS must be positive"
    )

# --- Dashboard ---
if REDIS_URL:
    from gateway.outage import client_options

    # redis-py 8 reads with a 5 s socket timeout by default, exactly channels-redis's 5 s blocking pop: every
    # websocket consumer idle for 5 s would die with "Timeout reading". Reads get room beyond the pop; the layer's
    # users bound their other calls themselves. Connecting is bounded as the limits' is (gateway.outage).
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": REDIS_URL, "socket_timeout": 15, **client_options()}]
