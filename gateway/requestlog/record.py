"""One request's record: created when the request arrives, closed once when it ends, from the outcomes the service
reported (gateway.outcomes), and then written (gateway.requestlog.writer) and counted (gateway.metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings

from gateway import metrics
from gateway.clientip import client_ip
from gateway.errors import APIError
from gateway.outcomes import Answer, Asked, Route, Usage
from gateway.relay import Stream
from gateway.requestlog import writer
from gateway.requestlog.rows import Fields

_in_progress = 0  # records started and not yet closed, in this process


class RequestRecord(Fields):
    """What the gateway knows about one request, from its arrival to its log row.

    `start` when the request arrives, `identify` once its key is known, `close` once when it ends (answered,
    refused, cancelled, or its stream over): whoever serves the request (the API's views, the dashboard's chat) owns
    the record; the service never touches it.
    """

    @classmethod
    def start(cls, endpoint: str, method: str, meta: Mapping[str, Any]) -> RequestRecord:
        """The record of a request that just arrived; `meta` is its META (or an equivalent dict)."""
        global _in_progress
        record = cls(endpoint=endpoint, method=method)
        record.client_ip = client_ip(meta)
        record.user_agent = str(meta.get("HTTP_USER_AGENT", ""))
        _in_progress += 1
        return record

    def identify(self, key: Any) -> None:
        """The request's API key is known: the row carries it, its owner, and the key's previews choice."""
        self.api_key_id, self.key_name, self.owner_id = key.pk, key.name, key.owner_id
        self.store_previews = previews_allowed(key)

    def asked(self) -> Asked:
        return Asked(self.request_id, self.created, self.store_previews)

    def close(
        self,
        status: int,
        route: Route | None = None,
        usage: Usage | None = None,
        error: APIError | None = None,
        client_gone: bool = False,
    ) -> None:
        """The request has ended: the record takes what the service reported, once, and goes to be written."""
        global _in_progress
        if self.closed:
            return
        self.closed = True
        _in_progress -= 1
        if route is not None:
            self.model_requested, self.model_used, self.backend = route.model_requested, route.model_used, route.backend
            self.stream, self.cold_start_ms = route.stream, route.cold_start_ms
        if usage is not None:
            self.prompt_tokens, self.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            self.tokens_per_second = usage.tokens_per_second
            self.cached_tokens, self.prompt_ms = usage.cached_tokens, usage.prompt_ms
            self.prompt_cache = usage.prompt_cache(route.prompt_restored if route is not None else False)
            if usage.first_token is not None:
                self.ttft_ms = (usage.first_token - self.started) * 1000
            if self.store_previews:
                self.prompt_preview = usage.prompt_preview
                self.completion_preview = usage.completion_preview[: settings.LOG_PREVIEW_CHARS + 1]
        if error is not None:
            self.error_type, self.error_code, self.error_message = error.type, error.code or "", error.message
        self.client_gone = client_gone
        self.finish(status)
        metrics.observe(self)
        writer.submit(self)

    @contextlib.contextmanager
    def failing(self) -> Iterator[None]:
        """Close the record if the block fails: with the APIError's status and route, 499 for a client that left
        (its cancellation carries the route too), 500 for anything else."""
        try:
            yield
        except APIError as exc:
            self.close(exc.status, exc.route, error=exc)
            raise
        except asyncio.CancelledError as exc:
            self.close(499, getattr(exc, "route", None), client_gone=True)
            raise
        except BaseException:
            self.close(500)
            raise

    def follow(self, outcome: Answer | Stream) -> None:
        """The service has answered: a whole answer closes the record now, a stream once it ends."""
        if isinstance(outcome, Answer):
            self.close(200, outcome.route, outcome.usage)
            return
        stream = outcome
        stream.on_end = lambda end: self.close(end.status, stream.route, stream.usage, end.error, end.client_gone)

    def finish(self, status: int) -> None:
        self.status = status
        self.latency_ms = (time.perf_counter() - self.started) * 1000


def in_progress_count() -> int:
    """Requests of this process whose record is not submitted yet: for /health."""
    return _in_progress


def previews_allowed(key: Any) -> bool:
    """Whether requests made with `key` (an APIKey, or None) keep prompt/completion previews."""
    override = getattr(key, "store_previews", None)
    return bool(settings.LOG_PREVIEWS if override is None else override)
