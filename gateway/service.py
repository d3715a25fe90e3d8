"""The gateway's request logic: validate, find the model, reach a backend (failover, a supervisor's lease), and hand
back a typed outcome: a whole Answer, or a Stream (gateway.relay) whose reader ends it.

Views (the HTTP API) and the dashboard's chat consumer both call in here, so routing, limits and translation are
one; the caller writes the request's log row from the outcome (gateway.outcomes), or from the APIError raised, which
carries the route as far as it got.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from gateway import affinity, errors, images, limits, prefix, prompts, relay, routing, schemas, upstream
from gateway.models import APIKey, ModelKind, PromptFormat
from gateway.node import link
from gateway.outcomes import Answer, Asked, Route, Usage
from gateway.routing import BackendInfo, ModelInfo

logger = logging.getLogger(__name__)
T = TypeVar("T")
EventsFor = Callable[[Usage], relay.Events]
CHAT, COMPLETIONS, RESPONSES, MESSAGES = "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"
# OpenAI fields with a different name or meaning in llama-server's own /completion API.
COMPLETION_FIELD_MAP = {"max_tokens": "n_predict", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
                        "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                        "logit_bias": "logit_bias"}  # fmt: skip


@contextlib.contextmanager
def _routing(route: Route) -> Iterator[Route]:
    """An APIError raised inside, or the cancellation of a client that left, carries the route as far as it got: its
    log row says where the request was."""
    try:
        yield route
    except (errors.APIError, asyncio.CancelledError) as exc:
        exc.route = route  # type: ignore[union-attr]
        raise


# --- chat and text completions ---


async def chat(key: APIKey, body: Any, asked: Asked) -> Answer | relay.Stream:
    """A chat completion: a whole Answer, or a Stream when the client asked for one."""
    route = Route()
    with _routing(route):
        data, extra, info = await _generation_request(schemas.ChatRequestSerializer, CHAT, key, body, route)
        images.check_messages(data["messages"], vision=info.kind == ModelKind.VISION)
        usage = Usage(
            prompt_preview=prompts.message_text(data["messages"][-1].get("content")) if asked.previews else ""
        )
        include_usage, n = _include_usage(data), data.get("n") or 1
        talk = _conversation(info, key, data["messages"], tools=data.get("tools"))
        if info.prompt_format == PromptFormat.SERVER or info.kind == ModelKind.VISION:
            payload = _openai_payload(info, data, extra)

            def events(usage: Usage) -> relay.Events:
                return relay.OpenAIEvents(data["model"], "content", include_usage, usage, asked.previews, n=n)

            return await _generate(key, info, data, asked, route, usage, CHAT, payload, events, talk)
        payload = _template_payload(info, data, extra)

        def template_events(usage: Usage) -> relay.Events:
            return relay.TemplateEvents(data["model"], asked, include_usage, usage, asked.previews)

        return await _generate(key, info, data, asked, route, usage, "/completion", payload, template_events, talk)


async def completion(key: APIKey, body: Any, asked: Asked) -> Answer | relay.Stream:
    route = Route()
    with _routing(route):
        data, extra, info = await _generation_request(
            schemas.CompletionRequestSerializer, COMPLETIONS, key, body, route
        )
        previews = asked.previews and isinstance(data["prompt"], str)
        usage = Usage(prompt_preview=data["prompt"] if previews else "")
        include_usage, n, count = _include_usage(data), data.get("n") or 1, prompts.prompt_count(data["prompt"])
        payload = _openai_payload(info, data, extra)

        def events(usage: Usage) -> relay.Events:
            return relay.OpenAIEvents(data["model"], "text", include_usage, usage, asked.previews, count, n)

        return await _generate(key, info, data, asked, route, usage, COMPLETIONS, payload, events)


async def _generation_request(
    serializer: type, endpoint: str, key: APIKey, body: Any, route: Route
) -> tuple[dict, dict, ModelInfo]:
    """Validate a generation request and find its model, which must serve `endpoint`."""
    data, extra = schemas.validate(serializer, body, extra_allowed=True)
    route.stream = bool(data.get("stream"))
    return data, extra, await _model(data, key, route, endpoint)


async def _model(data: dict, key: APIKey, route: Route, endpoint: str) -> ModelInfo:
    """The model a request names, if the key may use it and it serves `endpoint` (gateway.routing.require)."""
    route.model_requested = data["model"]
    info = await routing.resolve(data["model"], key.allowed_model_ids)
    route.model_used = info.model_id
    routing.require(info, endpoint)
    return info


def _include_usage(data: dict) -> bool:
    return bool((data.get("stream_options") or {}).get("include_usage"))


def _conversation(
    info: ModelInfo, key: APIKey, messages: list, system: Any = None, tools: Any = None
) -> prefix.Conversation | None:
    """The request's prefix hashes, for a model with a managed backend (its supervisor sends the request to the slot
    that holds the start of its prompt, or restores a saved cache of it: gateway.lifecycle.promptcache) or with more
    than one (the next turn goes back to the backend that read the last: gateway.affinity)."""
    if len(info.backends) < 2 and not any(backend.managed for backend in info.backends):
        return None
    return prefix.conversation(messages, model=info.model_id, key_id=key.pk, system=system, tools=tools)


async def _generate(
    key: APIKey, info: ModelInfo, data: dict, asked: Asked, route: Route, usage: Usage, path: str, payload: dict,
    events: EventsFor, talk: prefix.Conversation | None = None,
) -> Answer | relay.Stream:  # fmt: skip
    """Generate through a backend's stream, whatever the client asked for: leaving early cancels the generation
    either way. A client that wants one answer gets it put together (gateway.relay.whole), from another backend if
    the first fails part-way: nothing has reached the client yet."""
    lease = await limits.admit(key, asked.request_id, info.request_timeout)
    release = functools.partial(limits.release, lease)
    if not data["stream"]:
        try:
            answer = await _first_answering(info, lambda backend: _whole_answer(backend, info, path, payload,
                                                                                asked, route, usage, events, talk),
                                            affinity.backend_for(talk))  # fmt: skip
        finally:
            await asyncio.shield(release(usage.tokens))
        return Answer(answer, route, usage)
    try:
        source = await _first_answering(
            info,
            lambda backend: _open(backend, info, path, payload, asked, route, settings.SSE_KEEPALIVE_SECONDS, talk),
            affinity.backend_for(talk),
        )
    except BaseException:
        await release(0)
        raise
    return relay.Stream(source, events(usage), route, usage, release)


async def _whole_answer(
    backend: BackendInfo, info: ModelInfo, path: str, payload: dict, asked: Asked, route: Route, usage: Usage,
    events: EventsFor, talk: prefix.Conversation | None,
) -> dict:  # fmt: skip
    usage.restart()  # the answer's own first token and tokens, not those of a backend that failed part-way
    source = await _open(backend, info, path, payload, asked, route, info.request_timeout, talk)
    return await relay.whole(source, events(usage))


def _openai_payload(info: ModelInfo, data: dict, extra: dict) -> dict:
    """The request for llama-server's OpenAI-compatible routes: model defaults, then the client's own values."""
    payload = {**info.default_params, **{k: v for k, v in data.items() if v is not None}, **extra}
    for gateway_only in ("max_completion_tokens", "user", "echo"):
        payload.pop(gateway_only, None)
    payload["model"] = info.model_id
    max_tokens = _effective_max_tokens(info, data)
    if max_tokens:
        payload["max_tokens"] = max_tokens
    # Always a stream (see gateway.relay), always with usage: the log needs it; the client gets the usage chunk only
    # if it asked.
    payload["stream"] = True
    payload["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
    return payload


def _template_payload(info: ModelInfo, data: dict, extra: dict) -> dict:
    for field in ("tools", "tool_choice", "logprobs", "top_logprobs", "parallel_tool_calls"):
        if data.get(field):
            raise errors.invalid(
                f"'{field}' needs the model's own chat template: `{info.model_id}` uses the gateway-side "
                f"'{info.prompt_format}' format",
                param=field,
            )
    if (data.get("n") or 1) > 1:
        raise errors.invalid(
            f"'n' above 1 needs the model's own chat template: `{info.model_id}` uses the gateway-side "
            f"'{info.prompt_format}' format, whose llama.cpp route gives one choice",
            param="n",
        )
    prompt, stops = prompts.render(info.prompt_format, data["messages"])
    payload: dict[str, Any] = {**info.default_params, "prompt": prompt, "stream": True}
    for name, native in COMPLETION_FIELD_MAP.items():
        if data.get(name) is not None:
            payload[native] = data[name]
    payload["n_predict"] = _effective_max_tokens(info, data) or -1
    payload["stop"] = stops + (data.get("stop") or [])
    response_format = data.get("response_format") or {}
    if response_format.get("type") == "json_object":
        payload["json_schema"] = {"type": "object"}
    elif response_format.get("type") == "json_schema":
        payload["json_schema"] = (response_format.get("json_schema") or {}).get("schema", {})
    # llama.cpp's own sampling fields (top_k, min_p, …) pass through; it refuses what it does not know.
    return {**payload, **extra}


def _effective_max_tokens(info: ModelInfo, data: dict) -> int | None:
    asked = data.get("max_completion_tokens") or data.get("max_tokens")
    cap = info.max_tokens_cap
    return min(asked, cap) if asked and cap else asked or cap


# --- the Responses and Messages APIs (llama-server speaks both: the gateway passes them on) ---


async def responses(key: APIKey, body: Any, asked: Asked) -> Answer | relay.Stream:
    """OpenAI's Responses API, stateless as llama-server's: the whole conversation comes with each request."""
    route = Route()
    with _routing(route):
        data, _, info = await _generation_request(schemas.ResponsesRequestSerializer, RESPONSES, key, body, route)
        if data.get("previous_response_id"):
            raise errors.invalid(
                "This gateway keeps no responses (llama-server's Responses API is stateless): send the conversation "
                "so far in `input` instead of previous_response_id.",
                param="previous_response_id",
            )
        _needs_the_models_template(info, RESPONSES)
        items = data["input"] if isinstance(data["input"], list) else [{"content": data["input"]}]
        usage = Usage(prompt_preview=_last_text(items) if asked.previews else "")
        payload = _passed_on(info, body, "max_output_tokens")
        talk = _conversation(info, key, items, system=body.get("instructions"), tools=body.get("tools"))

        def events(usage: Usage) -> relay.Events:
            return relay.ResponsesEvents(data["model"], usage, asked.previews)

        return await _generate(key, info, data, asked, route, usage, RESPONSES, payload, events, talk)


async def messages(key: APIKey, body: Any, asked: Asked) -> Answer | relay.Stream:
    """Anthropic's Messages API."""
    route = Route()
    with _routing(route):
        data, _, info = await _generation_request(schemas.MessagesRequestSerializer, MESSAGES, key, body, route)
        _needs_the_models_template(info, MESSAGES)
        usage = Usage(prompt_preview=_last_text(data["messages"]) if asked.previews else "")
        payload = _passed_on(info, body, "max_tokens")
        talk = _conversation(info, key, data["messages"], system=body.get("system"), tools=body.get("tools"))

        def events(usage: Usage) -> relay.Events:
            return relay.AnthropicEvents(data["model"], usage, asked.previews)

        return await _generate(key, info, data, asked, route, usage, MESSAGES, payload, events, talk)


async def input_tokens(key: APIKey, body: Any, asked: Asked) -> Answer:
    """The Responses API's count of a request's input tokens, by the model's own llama-server."""
    return await _count_tokens(key, body, asked, schemas.ResponsesInputTokensSerializer, RESPONSES)


async def count_tokens(key: APIKey, body: Any, asked: Asked) -> Answer:
    """The Messages API's count of a request's input tokens, by the model's own llama-server."""
    return await _count_tokens(key, body, asked, schemas.CountTokensSerializer, MESSAGES)


async def _count_tokens(key: APIKey, body: Any, asked: Asked, serializer: type, endpoint: str) -> Answer:
    """Asked of the model's llama-server (loaded like any request), never shed, not counted as tokens used."""
    route = Route()
    with _routing(route):
        data, _, info = await _generation_request(serializer, endpoint, key, body, route)
        _needs_the_models_template(info, endpoint)
        path = "/v1/responses/input_tokens" if endpoint == RESPONSES else "/v1/messages/count_tokens"
        post = functools.partial(upstream.post_json, path=path, payload={**body, "model": info.model_id},
                                 timeout=info.request_timeout)  # fmt: skip
        # Never shed, and no tokens against the key's limits: counting is not generating.
        result = await _answer(key, info, data, asked, route, Usage(), False, post)
    return Answer(result, route)


def _passed_on(info: ModelInfo, body: dict, max_tokens_field: str) -> dict:
    """The request as the client sent it, over the model's defaults, for our model, streamed (gateway.relay), with
    the model's cap on its length."""
    payload = {**info.default_params, **body, "model": info.model_id, "stream": True}
    asked_for = body.get(max_tokens_field)
    cap = info.max_tokens_cap
    if cap:
        payload[max_tokens_field] = min(asked_for, cap) if asked_for else cap
    return payload


def _needs_the_models_template(info: ModelInfo, endpoint: str) -> None:
    if info.prompt_format != PromptFormat.SERVER and info.kind != ModelKind.VISION:
        raise errors.invalid(
            f"{endpoint} needs the model's own chat template, which converts its messages, tools and tool results: "
            f"`{info.model_id}` uses the gateway-side '{info.prompt_format}' format (use /v1/chat/completions)",
            param="model",
        )


def _last_text(items: list) -> str:
    """The text of the last message or input item: a string, or its text parts (OpenAI's and Anthropic's)."""
    last = items[-1] if items and isinstance(items[-1], dict) else {}
    content = last.get("content")
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")]
        return "\n".join(str(part.get("text") or "") for part in parts)
    return content if isinstance(content, str) else ""


# --- embeddings, reranking, transcriptions: one whole answer ---


async def embeddings(key: APIKey, body: Any, asked: Asked) -> Answer:
    route = Route()
    with _routing(route):
        data, _ = schemas.validate(schemas.EmbeddingRequestSerializer, body, extra_allowed=False)
        info = await _model(data, key, route, "/v1/embeddings")
        payload = {"input": data["input"], "model": info.model_id, "encoding_format": "float"}
        usage = Usage()
        post = functools.partial(
            upstream.post_json, path="/v1/embeddings", payload=payload, timeout=info.request_timeout
        )
        result = await _answer(key, info, data, asked, route, usage, False, post)
    if data["encoding_format"] == "base64":
        for item in result.get("data", []):
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return Answer(result, route, usage)


async def rerank(key: APIKey, body: Any, asked: Asked) -> Answer:
    """The documents ranked by their relevance to the query, most relevant first (llama-server's own answer)."""
    route = Route()
    with _routing(route):
        data, _ = schemas.validate(schemas.RerankRequestSerializer, body)
        info = await _model(data, key, route, "/v1/rerank")
        payload = {**{k: v for k, v in data.items() if v is not None}, "model": info.model_id}
        usage = Usage()
        post = functools.partial(upstream.post_json, path="/v1/rerank", payload=payload, timeout=info.request_timeout)
        # Not generation: a hot board does not shed it, as it does not shed embeddings.
        result = await _answer(key, info, data, asked, route, usage, False, post)
    return Answer(result, route, usage)


async def transcription(key: APIKey, form: Any, asked: Asked) -> Answer:
    """An uploaded audio file's text, by a model that accepts audio; `form` is the multipart form as the view read
    it (its fields, and the file under `file`)."""
    route = Route()
    with _routing(route):
        data, _ = schemas.validate(schemas.TranscriptionRequestSerializer, form)
        audio = data["file"]
        if audio.size > settings.MAX_AUDIO_BYTES:
            raise errors.APIError(413, f"The audio file is larger than {settings.MAX_AUDIO_BYTES} bytes", param="file",
                                  code="audio_too_large")  # fmt: skip
        info = await _model(data, key, route, "/v1/audio/transcriptions")
        # llama-server answers JSON only; the gateway puts it in plain text when that was asked for.
        fields = {"model": info.model_id, "response_format": "json"}
        fields |= {name: str(data[name]) for name in ("language", "prompt", "temperature") if data.get(name, "") != ""}
        upload = upstream.Upload(audio.name, audio.read(), audio.content_type or "application/octet-stream")
        post = functools.partial(upstream.post_form, path="/v1/audio/transcriptions", fields=fields,
                                 files={"file": upload}, timeout=info.request_timeout)  # fmt: skip
        usage = Usage()
        result = await _answer(key, info, data, asked, route, usage, True, post)
    text = str(result.get("text") or "") if data["response_format"] == "text" else None
    return Answer(result, route, usage, text)


async def _answer(
    key: APIKey, info: ModelInfo, data: dict, asked: Asked, route: Route, usage: Usage, generation: bool,
    post: Callable[[upstream.Target], Awaitable[dict]],
) -> dict:  # fmt: skip
    """One whole JSON answer, from the first of the model's backends that answers what `post` sends it, within
    the key's limits: its tokens are the answer's usage, its `model` the client's name for the model. `generation`:
    the board's heat and power shed it (a managed backend's kind decides that by itself, in its supervisor)."""
    lease = await limits.admit(key, asked.request_id, info.request_timeout)
    try:

        async def attempt(backend: BackendInfo) -> dict:
            async with _reach(backend, info.model_id, generation, asked, route) as target:
                return await post(target)

        result = await _first_answering(info, attempt)
        usage.count(result.get("usage"))
        usage.first()
    finally:
        await asyncio.shield(limits.release(lease, usage.tokens))
    if "model" in result:  # llama-server names its GGUF, or the id it was sent
        result["model"] = data["model"]
    return result


# --- reaching a backend ---


async def _first_answering(
    info: ModelInfo, attempt: Callable[[BackendInfo], Awaitable[T]], preferred: int | None = None
) -> T:
    """What `attempt` gets from the first of the model's backends that does not fail before answering.

    A backend that is unwell (a refused or dropped connection, a 5xx: see UpstreamError) is taken out of rotation
    and the next one is tried; any other failure is the answer. With none left, a 503, unless the last one tried
    had begun its answer (then broke it off or spelt it wrong): that failure is the answer. A managed backend's supervisor knows its state better
    than a cool-off: a connection refused right after its grant (the process was being stopped, or had crashed
    unnoticed) is asked for once more; a supervisor's refusal moves on to the next backend.
    """
    last: upstream.UpstreamError | None = None
    refusal: link.Refused | None = None
    for backend in routing.candidates(info, preferred):
        for again in (False, True) if backend.managed else (False,):
            try:
                return await attempt(backend)
            except upstream.UpstreamError as exc:
                if not exc.retryable:
                    raise relay.as_api_error(exc) from exc
                last = exc
                if backend.managed and exc.refused and not again:
                    continue
                if not backend.managed:
                    routing.mark_down(backend)
            except link.Refused as exc:
                refusal = exc
            break
    if refusal is not None and last is None:
        raise refusal  # the supervisor's own answer: queue full, load timeout, too large, failed to load
    if last is not None and last.midway:
        raise relay.as_api_error(last) from last  # the last one tried answered, then failed: a 502, not a 503
    raise errors.unavailable(f"No backend of `{info.model_id}` is available" + (f": {last}" if last else "."))


@contextlib.asynccontextmanager
async def _reach(
    backend: BackendInfo, model: str, generation: bool, asked: Asked, route: Route,
    talk: prefix.Conversation | None = None,
) -> AsyncIterator[upstream.Target]:  # fmt: skip
    """The backend's address for the time of the block, counted in its requests in flight meanwhile: a managed one's
    from a lease of its node's supervisor (load on demand; the lease names the slot, `route.slot`), an external one's
    own, admitted by the supervisor of the node it runs on (heat, power, energy) when that node has one."""
    route.slot, route.prompt_restored = None, False
    if talk is not None:
        affinity.remember(talk, backend.id)
    with routing.occupy(backend):
        if backend.managed:
            boundaries, owner = (talk.boundaries, talk.owner) if talk else ((), "")
            async with link.lease(
                backend.id, backend.node, backend.supervisor, asked.request_id, boundaries, owner
            ) as grant:
                route.backend = grant.target.base_url
                route.slot, route.prompt_restored = grant.slot, grant.restored
                if grant.cold:
                    route.waited(grant.waited_ms)
                yield grant.target
            return
        route.backend = backend.target.base_url
        if not backend.supervisor:
            yield backend.target
            return
        async with _admitted(backend, model, generation, asked):
            yield backend.target


@contextlib.asynccontextmanager
async def _admitted(backend: BackendInfo, model: str, generation: bool, asked: Asked) -> AsyncIterator[None]:
    """The node's admission for an external backend's request; a supervisor that cannot be reached admits: the
    backend itself is up, and the board's own protection stands behind it (its energy is not measured then)."""
    async with contextlib.AsyncExitStack() as admission:
        try:
            await admission.enter_async_context(
                link.admit(model, generation, backend.node, backend.supervisor, asked.request_id)
            )
        except link.Refused as exc:
            if exc.code != "supervisor_unavailable":
                raise
            logger.warning("serving %s unadmitted: %s", backend.target.base_url, exc.message)
        yield


async def _open(
    backend: BackendInfo, info: ModelInfo, path: str, payload: dict, asked: Asked, route: Route, keepalive: float,
    talk: prefix.Conversation | None = None,
) -> relay.Upstream:  # fmt: skip
    """A backend's stream once its first events have arrived, so that errors before them are plain HTTP errors."""
    batches = _batches(backend, info, path, payload, asked, route, keepalive, talk)
    try:
        first = await anext(batches)
    except StopAsyncIteration:
        raise upstream.UpstreamError("backend closed the stream before its first event", 502, retryable=True) from None
    except BaseException:
        await batches.aclose()
        raise
    return relay.Upstream(batches, first)


async def _batches(
    backend: BackendInfo, info: ModelInfo, path: str, payload: dict, asked: Asked, route: Route, keepalive: float,
    talk: prefix.Conversation | None,
) -> AsyncIterator[list[bytes]]:  # fmt: skip
    """The stream's owner: the backend's place, its lease and its connection are held until this generator is
    closed (Upstream.close), or collected."""
    async with _reach(backend, info.model_id, True, asked, route, talk) as target:
        if route.slot is not None:
            payload = {**payload, "id_slot": route.slot}
        async for batch in upstream.stream(target, path, payload, info.request_timeout, keepalive):
            yield batch


# --- for the dashboard ---


def dashboard_key(user: AbstractBaseUser) -> APIKey:
    """The signed-in user's internal key: dashboard chats count against its limits and carry its name in logs."""
    key = APIKey.objects.filter(owner=user, name=f"dashboard: {user.get_username()}", revoked=False).first()
    if key is None:
        key, _plaintext = APIKey.objects.create_key(name=f"dashboard: {user.get_username()}", owner=user)
    key.allowed_model_ids = frozenset(key.allowed_models.values_list("id", flat=True))  # type: ignore[attr-defined]
    return key
