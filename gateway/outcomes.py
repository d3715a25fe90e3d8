"""What the service tells its caller about one request, as typed values: where it went (Route), what it used (Usage),
and its answer, whole (Answer) or streamed (gateway.relay.Stream). The caller writes the request's log row from them,
once (gateway.requestlog.record)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Asked:
    """What the service needs to know of a request besides its body and key."""

    request_id: str
    created: datetime
    previews: bool  # keep a prompt and completion preview (the key's choice, else LOG_PREVIEWS)


@dataclass
class Route:
    """Where a request went, as far as it got: filled in by the service as it routes."""

    model_requested: str = ""
    model_used: str = ""
    backend: str = ""
    stream: bool = False
    cold_start_ms: float | None = None  # waited for a managed model to load
    slot: int | None = None  # the llama-server slot its managed model's supervisor chose for it (id_slot)
    prompt_restored: bool = False  # a cache of its prompt's start was restored from disk into that slot

    def waited(self, milliseconds: float) -> None:
        self.cold_start_ms = (self.cold_start_ms or 0) + milliseconds


@dataclass
class Usage:
    """What a request used: tokens as its backend counted them, its first token, previews when kept."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    cached_tokens: int | None = None  # of the prompt, served from a cache instead of read
    prompt_ms: float | None = None  # the time the backend spent reading the rest
    first_token: float | None = None  # time.perf_counter() when it arrived
    prompt_preview: str = ""
    completion_preview: str = ""

    @property
    def tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def count(self, usage: Any, timings: Any = None) -> None:
        """An OpenAI `usage` object (prompt and completion tokens, or a transcription's input and output tokens) and
        llama-server's `timings`, as an answer or its last event carries them."""
        counted_cache = False
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", usage.get("input_tokens", self.prompt_tokens))
            self.completion_tokens = usage.get("completion_tokens", usage.get("output_tokens", self.completion_tokens))
            details = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                self.cached_tokens, counted_cache = details["cached_tokens"], True
        if not isinstance(timings, dict):
            return
        if timings.get("predicted_per_second"):
            self.tokens_per_second = round(float(timings["predicted_per_second"]), 2)
        # The timings are one task's: the usage's own count is the whole request's (several prompts or choices).
        if isinstance(timings.get("cache_n"), int) and not counted_cache:
            self.cached_tokens = timings["cache_n"]
        if isinstance(timings.get("prompt_ms"), int | float):
            self.prompt_ms = round(float(timings["prompt_ms"]), 2)

    def prompt_cache(self, restored: bool) -> str:
        """Where the prompt's start came from (a RequestLog's prompt_cache), when the backend said how much of it
        was cached: restored from disk, reused from the model's memory, or read from scratch."""
        if self.cached_tokens is None:
            return ""
        if not self.cached_tokens:
            return "none"
        return "restored" if restored else "live"

    def first(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def restart(self) -> None:
        """Forget a backend's partial answer: another one answers from the start."""
        self.prompt_tokens = self.completion_tokens = self.tokens_per_second = self.first_token = None
        self.cached_tokens = self.prompt_ms = None
        self.completion_preview = ""


@dataclass
class Answer:
    body: dict[str, Any]
    route: Route
    usage: Usage = field(default_factory=Usage)
    text: str | None = None  # the answer as plain text instead of `body` (a transcription's response_format "text")
