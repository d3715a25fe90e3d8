"""The request log's writer: a bounded buffer of finished records, written to the database in batches by one thread."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection, transaction

from gateway.outage import COMMAND_TIMEOUT, RedisOutage
from gateway.requestlog.rows import entry, to_row

if TYPE_CHECKING:
    from gateway.requestlog.rows import Fields

logger = logging.getLogger(__name__)

GROUP = "requestlog"  # channel-layer group the dashboard tails
BATCH_SIZE = 500  # rows per INSERT; also wakes the writer early when this many are waiting
RETRY_DELAY = 2.0  # seconds between attempts while the database is unavailable
DROP_WARNING_EVERY = 60.0  # seconds between "rows dropped" log lines


class _Writer:
    """A bounded buffer drained by one daemon thread with its own database connection, in batches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified whenever the buffer has been emptied
        self.buffer: collections.deque[Fields] = collections.deque()
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
        self.live_tail = RedisOutage("Request log live tail", "it pauses until Redis is back", logger)

    def put(self, record: Fields) -> None:
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

    def write(self, batch: list[Fields]) -> list[Any]:

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
        from gateway.requestlog import usage

        try:
            usage.arrived(row.created for row in rows)
        except DatabaseError:
            logger.warning("Request log: could not refresh stored usage for %d rows", len(rows), exc_info=True)

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
                    await asyncio.wait_for(layer.group_send(GROUP, message), COMMAND_TIMEOUT)

            loop = self.loop
            if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
                # The in-memory layer's queues belong to the server's event loop: send from there. Any other
                # layer is sent to from this thread's own loop, keeping its network round trips off the server's.
                asyncio.run_coroutine_threadsafe(send_all(), loop).add_done_callback(_log_publish_error)
            else:
                if self.own_loop is None:
                    self.own_loop = asyncio.new_event_loop()
                # Bounded, and skipped while Redis is unreachable: the rows behind these wait for this thread.
                self.own_loop.run_until_complete(self.live_tail.attempt(send_all, timeout=None))
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


def submit(record: Fields) -> None:
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


def _at_exit() -> None:
    if pending_count() and not flush(timeout=5.0):
        logger.warning("Request log: %d rows not written at shutdown", pending_count())


atexit.register(_at_exit)
