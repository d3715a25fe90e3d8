"""Websocket consumers of the dashboard: live metrics, managed models' states, the live request log, and the chat
playground."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from gateway import auth, relay, requestlog, service
from gateway.errors import APIError
from gateway.node import link, states
from gateway.outage import COMMAND_TIMEOUT, REDIS_DOWN, RedisOutage
from gateway.requestlog import RequestRecord

logger = logging.getLogger(__name__)

METRICS_GROUP = "metrics"  # the monitor's sampler publishes here
LOG_GROUP = requestlog.GROUP  # the request log's writer publishes each written row here

_sending: set[asyncio.Task] = set()  # pushes on their way to a browser

# Close codes in the application range (4000-4999), so the page can tell "sign in again" from a network drop.
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN = 1013  # RFC 6455's "try again later": Redis, and so the group, is unreachable for now
_outage = RedisOutage("Dashboard live sockets", "they close and the pages reconnect until it is back", logger)


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only sessions allowed to use the dashboard. It uses no channel layer, so Redis cannot touch it."""

    channel_layer_alias = "none"  # not in CHANNEL_LAYERS: channels gives the consumer no layer

    async def connect(self) -> None:
        if not await auth.acan_use_dashboard(self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.join()
        await self.accept()

    async def join(self) -> None:
        """Join what the socket tails, before the page is told it is live: nothing here."""


class GroupConsumer(DashboardConsumer):
    """Tails a channel-layer group. While Redis is unreachable it closes the socket with 1013 (try again later)
    rather than retrying itself: the page reconnects with back-off, and each new socket joins the group afresh,
    which a restarted Redis has forgotten."""

    channel_layer_alias = DEFAULT_CHANNEL_LAYER
    group: str

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except REDIS_DOWN as exc:
            _outage.failed(exc)
            # Before the handshake this refuses it (the page retries); after, the page sees 1013 and reconnects.
            await self.close(code=CLOSE_TRY_AGAIN)

    async def join(self) -> None:
        await asyncio.wait_for(self.channel_layer.group_add(self.group, self.channel_name), COMMAND_TIMEOUT)
        _outage.ended()

    async def disconnect(self, code: int) -> None:
        # Redis gone forgets the membership by itself (a restart, or the group's expiry).
        with contextlib.suppress(*REDIS_DOWN):
            await asyncio.wait_for(self.channel_layer.group_discard(self.group, self.channel_name), COMMAND_TIMEOUT)


class MetricsConsumer(GroupConsumer):
    group = METRICS_GROUP

    async def metrics_sample(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "sample", "sample": event["sample"]})


class LogConsumer(GroupConsumer):
    group = LOG_GROUP

    async def log_entry(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "entry", "entry": event["entry"]})


class ModelsConsumer(DashboardConsumer):
    """Managed models, live: a snapshot from the database at connect, then every change each node's supervisor
    pushes to this process's connection to it (no channel layer: it works without Redis, once per process).

    Server → client: "snapshot" (models, nodes, whether the user may load and unload), "state" (model, budget).
    """

    unwatch: list[Callable[[], None]]

    async def connect(self) -> None:
        self.unwatch = []
        await super().connect()
        user = self.scope.get("user")
        if not await auth.acan_use_dashboard(user):
            return
        snapshot = await database_sync_to_async(states.snapshot)()
        await self.send_json({"type": "snapshot", **snapshot, "staff": bool(user.is_staff)})
        for node in snapshot["nodes"]:
            self.unwatch.append(link.connection(states.connect_to(node)).watch(self.relay))

    def relay(self, message: dict[str, Any]) -> None:
        if message.get("op") == "state":
            payload = {"type": "state", "model": message["model"], "budget": message["budget"]}
            task = asyncio.ensure_future(self.send_json(payload))
            _sending.add(task)
            task.add_done_callback(_sending.discard)

    async def disconnect(self, code: int) -> None:
        for stop in self.unwatch:
            stop()
        await super().disconnect(code)


class ChatConsumer(DashboardConsumer):
    """The chat playground: one generation at a time per socket, through the gateway's own chat service.

    Client → server: {"type": "chat", "model", "system", "messages", "temperature", "max_tokens"} and {"type": "stop"}.
    Server → client: "started", "delta" (content), "done" (finish_reason, usage, tokens_per_second), "stopped", "error".
    """

    task: asyncio.Task[None] | None = None

    async def disconnect(self, code: int) -> None:
        # Closing the tab must free the backend's slot as surely as the Stop button does.
        await self.stop()
        await super().disconnect(code)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "chat":
            if self.task is not None and not self.task.done():
                await self.send_json({"type": "error", "message": "A reply is still being generated: stop it first."})
                return
            self.task = asyncio.create_task(self.run(content))
        elif kind == "stop":
            if await self.stop():
                await self.send_json({"type": "stopped"})
        else:
            await self.send_json({"type": "error", "message": "Unknown message type."})

    async def stop(self) -> bool:
        """Cancel the generation in progress, if any; True when there was one."""
        task, self.task = self.task, None
        if task is None or task.done():
            return False
        task.cancel()
        # Wait until the upstream connection is closed (never raises, unlike awaiting the task itself).
        await asyncio.wait([task])
        return True

    async def run(self, content: dict[str, Any]) -> None:
        try:
            await self.generate(content)
        except Exception:
            logger.exception("Dashboard chat failed")
            await self.send_json({"type": "error", "message": "Internal error: see the server log."})

    async def generate(self, content: dict[str, Any]) -> None:
        user = self.scope["user"]
        key = await database_sync_to_async(service.dashboard_key)(user)
        record = self.new_record(key)
        try:
            with record.failing():
                stream = await service.chat(key, chat_body(content), record.asked())
        except APIError as exc:
            await self.send_json({"type": "error", "status": exc.status, "message": exc.message})
            return
        assert isinstance(stream, relay.Stream)  # the playground always streams
        record.follow(stream)
        await self.send_json({"type": "started", "model": stream.route.model_used or stream.route.model_requested})
        first_token: float | None = None
        finish_reason, usage = None, None
        try:
            async for chunk in stream.chunks():
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        first_token = first_token or time.perf_counter()
                        await self.send_json({"type": "delta", "content": text})
                    finish_reason = choice.get("finish_reason") or finish_reason
        except APIError as exc:
            await self.send_json({"type": "error", "message": exc.message or "generation failed"})
            return
        await self.send_json(
            {
                "type": "done",
                "finish_reason": finish_reason,
                "usage": usage,
                "tokens_per_second": stream.usage.tokens_per_second or _rate(usage, first_token),
            }
        )

    def new_record(self, key: Any) -> RequestRecord:
        """A log record attributed to the signed-in user and their dashboard key, like an API request with it."""
        headers = self.scope.get("headers") or []
        client = self.scope.get("client") or [None]
        user_agent = dict(headers).get(b"user-agent", b"").decode("latin-1")
        # X-Forwarded-For goes to the record, which believes it only from TRUSTED_PROXIES (daphne runs without
        # --proxy-headers: scope["client"] is the peer). Repeated headers are joined, as Django does for META.
        forwarded = ",".join(value.decode("latin-1") for name, value in headers if name == b"x-forwarded-for")
        meta = {"REMOTE_ADDR": client[0], "HTTP_USER_AGENT": user_agent, "HTTP_X_FORWARDED_FOR": forwarded}
        record = RequestRecord.start(self.scope.get("path", "/ws/chat/"), "WS", meta)
        record.identify(key)
        record.owner_id = self.scope["user"].pk
        return record


def chat_body(content: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI request for a playground message; the gateway validates every field as it would for the API."""
    messages = content.get("messages")
    system = content.get("system")
    if isinstance(messages, list) and isinstance(system, str) and system.strip():
        messages = [{"role": "system", "content": system}, *messages]
    body: dict[str, Any] = {
        "model": content.get("model"),
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for name in ("temperature", "max_tokens"):
        if content.get(name) is not None:
            body[name] = content[name]
    return body


def _rate(usage: dict[str, Any] | None, first_token: float | None) -> float | None:
    """Tokens per second from the client's side, when the backend sent no timings."""
    tokens = (usage or {}).get("completion_tokens")
    if not tokens or first_token is None:
        return None
    elapsed = time.perf_counter() - first_token
    return round(tokens / elapsed, 2) if elapsed > 0 else None
