"""Request log rows: the record the API fills in as a request proceeds, and its buffered, batched write to the database."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import ipaddress
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

GROUP = "requestlog"  # channel-layer group the dashboard tails
BATCH_SIZE = 500  # rows per INSERT; also wakes the writer early when this many are waiting
RETRY_DELAY = 2.0  # seconds between attempts while the database is unavailable
DROP_WARNING_EVERY = 60.0  # seconds between "rows dropped" log lines

# Fields of a row that the logs API, the live tail and CSV exports show.
PUBLIC_FIELDS = (
    "id",
    "request_id",
    "created",
    "api_key_id",
    "key_name",
    "endpoint",
    "method",
    "model_requested",
    "model_used",
    "backend",
    "status",
    "error_type",
    "error_message",
    "stream",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_second",
    "client_ip",
    "user_agent",
    "client_gone",
    "prompt_preview",
    "completion_preview",
)


@dataclass
class RequestRecord:
    """What the gateway knows about one request; becomes one RequestLog row."""

    endpoint: str
    method: str = "POST"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.perf_counter)
    api_key_id: int | None = None
    key_name: str = ""
    owner_id: int | None = None
    model_requested: str = ""
    model_used: str = ""
    backend: str = ""
    status: int = 0
    error_type: str = ""
    error_message: str = ""
    stream: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    client_ip: str | None = None
    user_agent: str = ""
    client_gone: bool = False
    prompt_preview: str = ""
    completion_preview: str = ""
    store_previews: bool = False

    def mark_first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    def finish(self, status: int) -> None:
        self.status = status
        self.latency_ms = (time.perf_counter() - self.started) * 1000

    def set_client(self, meta: Mapping[str, Any]) -> None:
        """Fill client IP and user agent from a request's META (or an equivalent dict)."""
        self.client_ip = client_ip(meta)
        self.user_agent = str(meta.get("HTTP_USER_AGENT", ""))


# --- Helpers for the views ---------------------------------------------------------------------------------------

_SECRET_PATTERNS = [
    # Our keys (sk-jg-<prefix>.<secret>) and OpenAI-style ones a client may have sent by mistake.
    (re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9._\-]{5,}"), "sk-[redacted]"),
    (re.compile(r"(?i)\bbearer\s+[^\s,;\"']+"), "Bearer [redacted]"),
    (re.compile(r"(?i)\b(authorization|api[_-]?key|x-api-key)(\"?\s*[:=]\s*\"?)[^\s,;\"']+"), r"\1\2[redacted]"),
]


def redact(text: str) -> str:
    """`text` with anything shaped like an API key or an Authorization header value blanked out."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def previews_allowed(key: Any) -> bool:
    """Whether requests made with `key` (an APIKey, or None) keep prompt/completion previews."""
    override = getattr(key, "store_previews", None)
    return bool(settings.LOG_PREVIEWS if override is None else override)


def preview(text: str | None) -> str:
    """`text` cut to LOG_PREVIEW_CHARS, for the optional prompt/completion previews."""
    if not text:
        return ""
    limit = settings.LOG_PREVIEW_CHARS
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[::1]:1234"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "1.2.3.4:1234"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_ip(meta: Mapping[str, Any]) -> str | None:
    """The client's address: REMOTE_ADDR, or X-Forwarded-For when (and only as far as) it came via trusted proxies."""
    remote = _parse_ip(str(meta.get("REMOTE_ADDR") or ""))
    if remote is None:
        return None
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    if not forwarded or not any(remote in net for net in trusted):
        return str(remote)
    # Walk from the nearest hop outwards; the first address not one of our proxies is the client.
    # Anything further left was written by the client itself and cannot be believed.
    hop = remote
    for part in reversed(forwarded.split(",")):
        address = _parse_ip(part)
        if address is None:
            break
        hop = address
        if not any(hop in net for net in trusted):
            break
    return str(hop)


# --- The buffered writer -----------------------------------------------------------------------------------------


class _Writer:
    """A bounded buffer drained by one daemon thread with its own database connection, in batches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified whenever the buffer has been emptied
        self.buffer: collections.deque[RequestRecord] = collections.deque()
        self.wake = threading.Event()  # a batch is ready, or someone waits in flush()
        self.retry = threading.Event()  # flush() wants a retry now rather than after RETRY_DELAY
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.dropped = 0
        self.last_drop_warning = -DROP_WARNING_EVERY
        self.failing_since: float | None = None  # when writes started failing, while they do
        self.last_failure_warning = -DROP_WARNING_EVERY
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's event loop, seen in submit()
        self.own_loop: asyncio.AbstractEventLoop | None = None  # for publishing when there is none

    def put(self, record: RequestRecord) -> None:
        warn = False
        with self.lock:
            if len(self.buffer) >= settings.LOG_BUFFER_SIZE:
                self.dropped += 1
                now = time.monotonic()
                if now - self.last_drop_warning >= DROP_WARNING_EVERY:
                    self.last_drop_warning = now
                    warn = True
                waiting = 0
            else:
                self.buffer.append(record)
                waiting = len(self.buffer)
        if warn:
            logger.warning(
                "Request log buffer full (%d rows; is the database down?): %d rows dropped so far",
                settings.LOG_BUFFER_SIZE,
                self.dropped,
            )
        self.start()
        if waiting >= BATCH_SIZE:
            self.wake.set()

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.stopping.clear()
                self.thread = threading.Thread(target=self.run, name="requestlog-writer", daemon=True)
                self.thread.start()

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            if not self.buffer:
                return True
        self.start()
        with self.idle:
            while self.buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.wake.set()
                self.retry.set()
                self.idle.wait(min(remaining, 0.1))
        return True

    def stop(self, timeout: float) -> bool:
        """Flush, then end the thread and close its connection (tests; a clean shutdown)."""
        flushed = self.flush(timeout)
        thread = self.thread
        if thread is not None and thread.is_alive():
            self.stopping.set()
            self.wake.set()
            self.retry.set()
            thread.join(timeout)
        if thread is not None and not thread.is_alive():
            self.thread = None
        return flushed

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.wake.wait(settings.LOG_FLUSH_INTERVAL)
                self.wake.clear()
                try:
                    ok = self.drain()
                except Exception:
                    logger.exception("Request log writer: unexpected error")
                    ok = False
                if not ok and not self.stopping.is_set():
                    # The database is unavailable: the rows stay in the buffer; try again a little later.
                    self.retry.wait(RETRY_DELAY)
                    self.retry.clear()
        finally:
            _close_connection()
            if self.own_loop is not None:
                self.own_loop.close()
                self.own_loop = None

    def drain(self) -> bool:
        """Write batches until the buffer is empty; False when the database refused them (rows kept)."""
        while True:
            with self.lock:
                if not self.buffer:
                    self.idle.notify_all()
                    return True
                # Only this thread removes rows, so the batch stays at the front until it is written.
                batch = list(itertools.islice(self.buffer, BATCH_SIZE))
            try:
                rows = self.write(batch)
            except (OperationalError, InterfaceError) as exc:
                now = time.monotonic()
                if self.failing_since is None or now - self.last_failure_warning >= DROP_WARNING_EVERY:
                    logger.warning("Request log: database unavailable, %d rows waiting: %s", len(self.buffer), exc)
                    self.last_failure_warning = now
                self.failing_since = self.failing_since or now
                _close_connection()
                return False
            if self.failing_since is not None:
                logger.warning("Request log: database back after %.0f s", time.monotonic() - self.failing_since)
                self.failing_since = None
            with self.lock:
                for _ in batch:
                    self.buffer.popleft()
            self.forget_usage(rows)
            self.publish(rows)

    def write(self, batch: list[RequestRecord]) -> list[Any]:

        close_old_connections()
        rows = []
        for record in batch:
            try:
                rows.append(to_row(record))
            except Exception:
                # A record a view filled in wrongly must not block the ones behind it.
                self.count_dropped()
                logger.exception("Request log: dropped malformed record %s", getattr(record, "request_id", "?"))
        try:
            _insert_many(rows)
            return rows
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            # One bad row (say, its key deleted meanwhile) must not hold back the others: write them one by one.
            return self.write_each(rows)

    def count_dropped(self) -> None:
        with self.lock:
            self.dropped += 1

    def write_each(self, rows: list[Any]) -> list[Any]:
        written = []
        for row in rows:
            for attempt in range(2):
                try:
                    with transaction.atomic():
                        row.save(force_insert=True)
                    written.append(row)
                    break
                except (OperationalError, InterfaceError):
                    raise
                except Exception as exc:
                    if attempt == 0:
                        row.pk = None
                        row.api_key_id = row.owner_id = None
                        continue
                    self.count_dropped()
                    logger.warning("Request log: dropped row %s: %s", row.request_id, exc)
        return written

    def forget_usage(self, rows: list[Any]) -> None:
        """Rows of long requests can land in a usage bucket already stored: have it computed again."""
        from gateway import usage

        horizon = timezone.now() - usage.GRACE
        late = {row.created for row in rows if row.created < horizon}
        if late:
            try:
                usage.forget(late)
            except DatabaseError:
                logger.warning("Request log: could not refresh stored usage for %d late rows", len(late), exc_info=True)

    def publish(self, rows: Iterable[Any]) -> None:
        """Send written rows to the dashboard's group; a failure here loses the live line, never the row."""
        messages: list[dict] = []
        try:
            from channels.layers import InMemoryChannelLayer, get_channel_layer

            layer = get_channel_layer()
            if layer is None:
                return
            if isinstance(layer, InMemoryChannelLayer) and not layer.groups.get(GROUP):
                return  # nobody is tailing the log: spare the server's event loop the sends
            messages = [{"type": "log.entry", "entry": entry(row)} for row in rows]
            if not messages:
                return

            async def send_all() -> None:
                for message in messages:
                    await layer.group_send(GROUP, message)

            loop = self.loop
            if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
                # The in-memory layer's queues belong to the server's event loop: send from there. Any other
                # layer is sent to from this thread's own loop, keeping its network round trips off the server's.
                asyncio.run_coroutine_threadsafe(send_all(), loop).add_done_callback(_log_publish_error)
            else:
                if self.own_loop is None:
                    self.own_loop = asyncio.new_event_loop()
                self.own_loop.run_until_complete(send_all())
        except Exception:
            logger.warning("Request log: could not publish %d rows to the live tail", len(messages), exc_info=True)


def _insert_many(rows: list[Any]) -> None:
    """One prepared INSERT run for every row: the ORM's bulk_create spent ~225 µs of Python per row here, in a
    thread that shares the GIL with the event loop. Rows written this way carry no primary key (the live tail
    tells rows apart by request_id)."""
    from gateway.models import RequestLog

    if not rows:
        return
    fields = [f for f in RequestLog._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(RequestLog._meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    params = [[f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields] for row in rows]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _close_connection() -> None:
    with contextlib.suppress(Exception):
        connection.close()


def _log_publish_error(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("Request log: could not publish to the live tail: %s", future.exception())


_writer = _Writer()


def submit(record: RequestRecord) -> None:
    """Hand a finished record to the writer. Never raises and never blocks the request."""
    try:
        if not settings.LOG_ENABLED:
            return
        with contextlib.suppress(RuntimeError):
            _writer.loop = asyncio.get_running_loop()
        _writer.put(record)
    except Exception:
        logger.exception("Request log: could not queue a record")


def flush(timeout: float = 5.0) -> bool:
    """Wait until every submitted row is written; False when `timeout` passed first (e.g. the database is down)."""
    return _writer.flush(timeout)


def stop(timeout: float = 5.0) -> bool:
    """Flush and end the writer thread, closing its database connection; the next submit() starts a new one."""
    return _writer.stop(timeout)


def dropped_count() -> int:
    """Rows dropped since the process started (buffer full, or rejected by the database): for /health."""
    return _writer.dropped


def pending_count() -> int:
    """Rows waiting to be written: for /health."""
    with _writer.lock:
        return len(_writer.buffer)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def to_row(record: RequestRecord) -> Any:
    """The RequestLog for a record: text clipped to its column, secrets redacted, previews only when allowed."""
    from gateway.models import RequestLog

    previews = record.store_previews
    ip = record.client_ip if record.client_ip and _parse_ip(record.client_ip) else None
    return RequestLog(
        request_id=record.request_id[:32],
        created=record.created,
        api_key_id=record.api_key_id,
        key_name=_clip(record.key_name, 100),
        owner_id=record.owner_id,
        endpoint=_clip(record.endpoint, 100),
        method=record.method[:10],
        model_requested=_clip(record.model_requested, 200),
        model_used=_clip(record.model_used, 200),
        backend=_clip(record.backend, 300),
        status=max(0, min(int(record.status), 32767)),
        error_type=_clip(record.error_type, 100),
        error_message=_clip(redact(record.error_message), 2000),
        stream=record.stream,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        tokens_per_second=record.tokens_per_second,
        client_ip=ip,
        user_agent=_clip(redact(record.user_agent), 300),
        client_gone=record.client_gone,
        prompt_preview=redact(preview(record.prompt_preview)) if previews else "",
        completion_preview=redact(preview(record.completion_preview)) if previews else "",
    )


def entry(row: Any) -> dict[str, Any]:
    """The public fields of a RequestLog (instance or `.values()` dict), JSON-ready."""
    get = row.get if isinstance(row, dict) else functools.partial(getattr, row)
    data = {name: get(name) for name in PUBLIC_FIELDS}
    data["created"] = data["created"].isoformat().replace("+00:00", "Z")
    return data


def _at_exit() -> None:
    if pending_count() and not flush(timeout=5.0):
        logger.warning("Request log: %d rows not written at shutdown", pending_count())


atexit.register(_at_exit)
