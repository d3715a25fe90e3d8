"""The OpenAPI document of this server's public API, built from what really validates: request bodies from the
gateway's serializers, query parameters from the views' own declarations (gateway.params), and every operation's
statuses from one table here (OPERATIONS). tests/test_openapi_conformance.py runs schemathesis against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty

from gateway import images, params, routing, schemas
from gateway.models import ModelKind
from gateway.requestlog import usage
from gateway.requestlog import views as logviews
from monitor import views as monitorviews
from monitor.admission import HARD, NORMAL, SOFT, STALE

ERROR = {"$ref": "#/components/schemas/Error"}
ANTHROPIC_ERROR = {"$ref": "#/components/schemas/AnthropicError"}
MODEL = {"$ref": "#/components/schemas/Model"}
BEARER = [{"bearer": []}]
# Anthropic's SDKs send the key as x-api-key, which these operations take instead of a Bearer token.
X_API_KEY = {"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "The API key, as Anthropic's SDKs and Claude Code send it (instead of a Bearer token; "
                            "both, naming different keys, are refused)."}  # fmt: skip
# DRF's CharField refuses NUL characters in every string it reads (ProhibitNullCharactersValidator).
NO_NUL = f"^(?:{params.ANY_TEXT})$"
_JSON_TYPES = {str: "string", list: "array", dict: "object", int: "integer", float: "number", bool: "boolean"}

# --- Request bodies: from the serializers ---------------------------------------------------------------------------


def _bounded(
    schema: dict[str, Any], field: serializers.Field, may_be_empty: bool, low: str, high: str
) -> dict[str, Any]:
    """`schema` with the field's bounds on its length (`low`, `high`): at least one unless it may be empty."""
    minimum = max(field.min_length or 0, 0 if may_be_empty else 1)
    if minimum:
        schema[low] = minimum
    if field.max_length is not None:
        schema[high] = field.max_length
    return schema


def _string_schema(field: serializers.CharField) -> dict[str, Any]:
    if field.trim_whitespace and not field.allow_blank:
        raise TypeError(f"{field!r}: a trimmed non-blank string has no exact schema; use StrictCharField")
    return _bounded({"type": "string", "pattern": NO_NUL}, field, field.allow_blank, "minLength", "maxLength")


def _list_schema(field: serializers.ListField | serializers.ListSerializer, items: dict[str, Any]) -> dict[str, Any]:
    return _bounded({"type": "array", "items": items}, field, field.allow_empty, "minItems", "maxItems")


def _type_schema(field: serializers.Field) -> dict[str, Any]:
    """The JSON Schema of what one field accepts, before null-ability, bounds and description."""
    if isinstance(field, serializers.ListSerializer):
        return _list_schema(field, body_schema(field.child))
    if isinstance(field, serializers.Serializer):
        return body_schema(field)
    if isinstance(field, serializers.ListField):
        return _list_schema(field, field_schema(field.child))
    if isinstance(field, schemas.AnyOfField):
        return {"anyOf": [field_schema(alternative) for alternative in field.alternatives]}
    if isinstance(field, serializers.ChoiceField):
        return {"type": "string", "enum": list(field.choices)}
    if isinstance(field, schemas.StrictBooleanField):
        supported = list(field.supported)
        return {"type": "boolean"} if len(supported) == 2 else {"type": "boolean", "enum": supported}
    if isinstance(field, schemas.StrictIntegerField):
        return {"type": "integer"}
    if isinstance(field, schemas.StrictFloatField | schemas.FormFloatField):
        return {"type": "number"}
    if isinstance(field, schemas.AudioFileField):
        return {"type": "string", "format": "binary", **({} if field.allow_empty_file else {"minLength": 1})}
    if isinstance(field, schemas.ImageURLField):
        return {"type": "string", "pattern": images.url_pattern(), "maxLength": images.url_max_length()}
    if isinstance(field, schemas.StrictCharField):
        return _string_schema(field)
    if isinstance(field, schemas.AnyJSONField):
        kinds = [{"type": _JSON_TYPES[t]} for t in field.types]
        for kind in kinds:
            if kind["type"] == "array" and field.min_items:
                kind["minItems"] = field.min_items
        return kinds[0] if len(kinds) == 1 else {"anyOf": kinds}
    # DRF's own Boolean/Integer/Float/CharField take "yes", "7" or 7 too: no schema would say what they accept.
    raise TypeError(f"no exact schema for {field!r}: use the strict fields of gateway.schemas")


def field_schema(field: serializers.Field) -> dict[str, Any]:
    """A JSON Schema for one serializer field: its type, bounds, choices, default and null-ability."""
    schema = _type_schema(field)
    for attribute, keyword in (("min_value", "minimum"), ("max_value", "maximum")):
        if getattr(field, attribute, None) is not None:
            schema[keyword] = getattr(field, attribute)
    if field.default is not empty and not callable(field.default):
        schema["default"] = field.default
    if getattr(field, "allow_null", False):
        schema["nullable"] = True
    if field.help_text:
        schema["description"] = str(field.help_text)
    return schema


def body_schema(serializer: serializers.Serializer) -> dict[str, Any]:
    fields = serializer.fields
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: field_schema(field) for name, field in fields.items()},
        "required": [name for name, field in fields.items() if field.required],
    }
    if not schema["required"]:
        del schema["required"]
    if getattr(serializer, "passes_unknown_fields", True) is False:
        schema["additionalProperties"] = False
    # One of these fields must be given, not null and (a list) not empty: see MessageSerializer.validate.
    alternatives = getattr(serializer, "one_of_required", ())
    if alternatives:
        schema["anyOf"] = [
            {"required": [name], "properties": {name: {"not": {"enum": [None, []]}}}} for name in alternatives
        ]
    return schema


# --- Operations: one table of paths, methods and every status each one answers --------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    statuses: tuple[int, ...]  # every status this operation answers; anything else is a bug in it or here
    body: type[serializers.Serializer] | None = None
    parameters: tuple[params.Param, ...] = ()
    ok: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    stream: bool = False  # with `stream: true` the answer is an event stream
    text: bool = False  # it may answer in plain text (as the request asks)
    public: bool = False  # needs no API key
    description: str = ""
    anthropic: bool = False  # errors in Anthropic's shape and statuses (gateway.errors.anthropic_response)


GENERATION = (200, 400, 401, 403, 404, 413, 429, 501, 502, 503, 504)
# Anthropic says 529 where OpenAI's shape says 503.
ANTHROPIC_GENERATION = (200, 400, 401, 403, 404, 413, 429, 501, 502, 504, 529)
RESPONSE = {
    "type": "object",
    "required": ["id", "object", "status", "model", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["response"]},
        "status": {"type": "string"},
        "model": {"type": "string", "description": "The model's id as the request named it."},
        "output": {"type": "array", "items": {"type": "object"}, "description": "Messages, function calls, reasoning."},
        "usage": {"type": "object"},
    },
}
MESSAGE = {
    "type": "object",
    "required": ["id", "type", "role", "content", "model", "stop_reason"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["message"]},
        "role": {"type": "string", "enum": ["assistant"]},
        "content": {"type": "array", "items": {"type": "object"}, "description": "text, tool_use, thinking blocks"},
        "model": {"type": "string", "description": "The model's id as the request named it."},
        "stop_reason": {"type": "string", "nullable": True},
        "usage": {"type": "object"},
    },
}
INPUT_TOKENS = {"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}}
MODEL_SCHEMA = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by", "kind", "capabilities"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "kind": {"type": "string", "enum": list(ModelKind.values), "description": "What it serves: chat and vision "
                 "models the generation endpoints, embedding models /v1/embeddings, rerank models /v1/rerank."},
        "capabilities": {"type": "array", "items": {"type": "string", "enum": list(routing.CAPABILITIES)},
                         "description": "Inputs it takes besides text; `audio`: it serves /v1/audio/transcriptions."},
    },
}  # fmt: skip
RERANKING = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "model": {"type": "string"},
        "object": {"type": "string", "enum": ["list"]},
        "results": {
            "type": "array",
            "description": "Most relevant first; `index` is the document's place in the request's `documents`.",
            "items": {"type": "object", "required": ["index", "relevance_score"],
                      "properties": {"index": {"type": "integer"}, "relevance_score": {"type": "number"}}},
        },
        "usage": {"type": "object"},
    },
}  # fmt: skip
TRANSCRIPTION = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}, "usage": {"type": "object"}},
}
MODEL_LIST = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": MODEL}},
}
READINESS = {
    "type": "object",
    "required": ["status", "database"],
    "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}, "database": {"type": "boolean"}},
}
NUMBER_OR_NULL = {"type": "number", "nullable": True}
STRING_OR_NULL = {"type": "string", "nullable": True}
ADMISSION_FIELDS = {
    "state": {"type": "string", "enum": [NORMAL, SOFT, HARD, STALE], "description": "normal; soft: new generation "
              "requests wait, one at a time per model; hard: they are refused (503); stale: the sampler decided soft "
              "or hard but has been silent for longer than ADMISSION_STALE_SECONDS, so load is admitted normally."},
    "reason": {"type": "string", "description": "Why, with the figures (empty when normal, unless a sensor went "
               "stale); when stale, what the silent sampler last decided (\"last decided hard: …\")."},
    "since": {**STRING_OR_NULL, "description": "When the node entered this state (stale: the sampler's last "
              "sample)."},
}  # fmt: skip
ADMISSION = {"type": "object", "required": list(ADMISSION_FIELDS), "properties": ADMISSION_FIELDS}
NODE_ADMISSION = {
    "type": "object",
    "required": ["node", *ADMISSION_FIELDS, "last_seen"],
    "properties": {
        "node": {"type": "string"},
        **ADMISSION_FIELDS,
        "last_seen": {**STRING_OR_NULL, "description": "The node's latest sample: how fresh its state is."},
    },
}
LIMITS = {
    "type": "object",
    "required": ["store", "degraded", "since"],
    "properties": {
        "store": {"type": "string", "enum": ["redis", "database"]},
        "degraded": {"type": "boolean", "description": "Redis is unreachable: this process counts the limits alone."},
        "since": {**STRING_OR_NULL, "description": "When this process lost Redis."},
    },
    "description": "Where the limits are counted, as this process sees it.",
}
HEALTH = {
    "type": "object",
    "required": ["status", "models", "nodes", "admission", "request_log", "limits"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"], "description": "degraded: a model has no backend up."},
        "models": {"type": "array", "items": {"type": "object"}},
        "nodes": {"type": "array", "items": {"type": "object"}, "description": "Each supervisor's model budget."},
        "admission": {"type": "array", "items": NODE_ADMISSION, "description": "Each sampled node's admission state."},
        "request_log": {"type": "object"},
        "limits": LIMITS,
    },
}
NODE = {
    "type": "object",
    "required": ["name", "board_model", "l4t_release", "power_mode", "first_seen", "last_seen", "admission"],
    "properties": {
        **{name: {"type": "string"} for name in ("name", "board_model", "l4t_release", "power_mode", "first_seen")},
        "last_seen": STRING_OR_NULL,
        "admission": ADMISSION,
    },
}
NODES = {
    "type": "object",
    "required": ["nodes", "metrics"],
    "properties": {
        "nodes": {"type": "array", "items": NODE},
        "metrics": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
# Every bucket has these; by=model adds `model`, by=key `key_id`, `key_prefix` and `key_name`.
USAGE_FIGURES = {
    "requests": {"type": "integer"},
    "errors": {"type": "integer", "description": "Requests answered with a status of 400 or more."},
    "prompt_tokens": {"type": "integer"},
    "completion_tokens": {"type": "integer"},
    "avg_latency_ms": NUMBER_OR_NULL,
    "p95_latency_ms": NUMBER_OR_NULL,
    "energy_j": {**NUMBER_OR_NULL, "description": "Energy of the measured requests (each one's share of its node's), "
                 "J; null when none was measured (no power sensor, or a backend no supervisor runs)."},
    "tokens_per_joule": {**NUMBER_OR_NULL, "description": "Completion tokens of the measured requests per joule; "
                         "null when none was measured."},
    "prompt_cache": {
        "type": "object",
        "required": [*usage.CACHE_SOURCES, "hit_rate", "cached_tokens", "saved_ms"],
        "description": "Where the prompts' starts were read from, as the backends said.",
        "properties": {
            "restored": {"type": "integer", "description": "Requests whose prompt cache was restored from disk."},
            "live": {"type": "integer", "description": "Requests that reused a prompt cache in the model's memory."},
            "none": {"type": "integer", "description": "Requests whose prompt was read from scratch."},
            "hit_rate": {**NUMBER_OR_NULL, "description": "(restored + live) / (restored + live + none); null when "
                         "no request said."},
            "cached_tokens": {"type": "integer", "description": "Prompt tokens served from a cache."},
            "saved_ms": {**NUMBER_OR_NULL, "description": "Prefill time the cached tokens saved, estimated at the "
                         "bucket's reading time per prompt token read; null when no request said its reading time."},
        },
    },
}  # fmt: skip
USAGE_BUCKET = {
    "type": "object",
    "required": ["bucket", *USAGE_FIGURES],
    "properties": {
        "bucket": {"type": "string", "description": "Start of the hour or day, in TIME_ZONE."},
        "model": {"type": "string", "description": "The model used, else the one asked for."},
        "key_id": {"type": "integer", "nullable": True, "description": "null for requests without a valid key."},
        "key_prefix": {"type": "string", "nullable": True},
        "key_name": {"type": "string", "nullable": True},
        **USAGE_FIGURES,
    },
}
USAGE = {
    "type": "object",
    "required": ["object", "group", "by", "since", "until", "data"],
    "properties": {
        "object": {"type": "string", "enum": ["usage"]},
        "group": {"type": "string", "enum": list(usage.GROUPS)},
        "by": {"type": "string", "enum": list(usage.BY)},
        "since": {"type": "string"},
        "until": {"type": "string"},
        "data": {"type": "array", "items": USAGE_BUCKET},
    },
}
USAGE_LIMITS = ", ".join(f"{count} {group}s" for group, count in logviews.MAX_USAGE_BUCKETS.items())

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/chat/completions", "Chat completion (text or vision)", GENERATION,
              body=schemas.ChatRequestSerializer, stream=True,
              description="Image parts only for vision models (400 for the others)."),
    Operation("post", "/v1/completions", "Legacy text completion", GENERATION,
              body=schemas.CompletionRequestSerializer, stream=True),
    Operation("post", "/v1/responses", "OpenAI's Responses API, stateless (llama-server keeps no responses)",
              GENERATION, body=schemas.ResponsesRequestSerializer, ok=RESPONSE, stream=True,
              description="Tools, instructions and the rest pass on to llama-server; previous_response_id is a 400. "
                          "Streamed: llama-server's named events; the usage is in `response.completed`."),
    Operation("post", "/v1/responses/input_tokens", "The input tokens a Responses request would use",
              GENERATION, body=schemas.ResponsesInputTokensSerializer, ok=INPUT_TOKENS,
              description="Counted by the model's own llama-server (loaded like any request); never shed, not "
                          "counted against the key's tokens."),
    Operation("post", "/v1/messages", "Anthropic's Messages API", ANTHROPIC_GENERATION,
              body=schemas.MessagesRequestSerializer, ok=MESSAGE, stream=True, anthropic=True,
              description="The key as x-api-key (Anthropic's SDKs, Claude Code) or a Bearer token; anthropic-version "
                          "is accepted. Errors in Anthropic's shape, overloaded as 529."),
    Operation("post", "/v1/messages/count_tokens", "The input tokens a Messages request would use",
              ANTHROPIC_GENERATION, body=schemas.CountTokensSerializer, ok=INPUT_TOKENS, anthropic=True,
              description="Counted by the model's own llama-server; never shed, not counted against the key's "
                          "tokens."),
    Operation("post", "/v1/embeddings", "Embeddings of a string or a list of strings or token arrays", GENERATION,
              body=schemas.EmbeddingRequestSerializer),
    Operation("post", "/v1/rerank", "Documents ranked by relevance to a query (a rerank model)", GENERATION,
              body=schemas.RerankRequestSerializer, ok=RERANKING,
              description="`top_n` keeps that many of the best. Never shed by the board's heat or power."),
    Operation("post", "/v1/audio/transcriptions", "The text of an audio file (a model that accepts audio)", GENERATION,
              body=schemas.TranscriptionRequestSerializer, ok=TRANSCRIPTION, text=True,
              description="A multipart upload; `response_format=text` answers in plain text. 413 for a file over "
                          "MAX_AUDIO_BYTES. Generation: shed by the board's heat or power like chat."),
    Operation("get", "/v1/models", "Models this key may use", (200, 401), ok=MODEL_LIST),
    Operation("get", "/v1/models/{model_id}", "One model (by id or alias)", (200, 401, 404), ok=MODEL),
    Operation("get", "/health", "Every backend's status, latency and slots, each node's admission state (a key or "
              "a staff session)", (200, 401), ok=HEALTH),
    Operation("get", "/livez", "The process answers", (200,), public=True,
              ok={"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok"]}}}),
    Operation("get", "/readyz", "Ready to serve: the database answers (503 with the same body if not)", (200, 503),
              public=True, ok=READINESS),
    Operation("get", "/system/stats", "The newest metrics sample of a node (key with the monitoring scope)",
              (200, 400, 401, 403, 404), parameters=monitorviews.SystemStats.parameters,
              description="404 before the node's first sample, or for a node never sampled."),
    Operation("get", "/api/nodes", "Sampled nodes, their admission states and the metric names (monitoring scope)",
              (200, 401, 403), parameters=monitorviews.Nodes.parameters, ok=NODES),
    Operation("get", "/api/metrics/history", "A metric's history, downsampled (monitoring scope)",
              (200, 400, 401, 403, 404), parameters=monitorviews.MetricHistory.parameters,
              description="404 before the node's first sample, or for a node never sampled."),
    Operation("get", "/api/logs", "Request log rows, newest first (key with the logs scope)", (200, 400, 401, 403),
              parameters=logviews.LogList.parameters),
    Operation("get", "/api/usage", "Requests, errors, tokens, energy and prompt caches per hour or day (logs scope)",
              (200, 400, 401, 403), parameters=logviews.Usage.parameters, ok=USAGE,
              description=f"`since` must be before `until`, at most {USAGE_LIMITS} apart (400 otherwise)."),
    Operation("get", "/api/activity-logs", "The newest rows in the original service's field names (logs scope)",
              (200, 400, 401, 403), parameters=logviews.ActivityLogs.parameters),
    Operation("get", "/api/models/running", "Managed models' states and each node's memory budget (models scope)",
              (200, 401, 403)),
    *(Operation("post", f"/api/models/{{model_id}}/{operation}", summary, (200, 400, 401, 403, 404, 409, 503),
                description=f"A key with the models scope or a staff session. {detail}")
      for operation, summary, detail in (
          ("load", "Load a managed model (waits until it is ready)", "`?wait=false` returns once it is starting."),
          ("unload", "Stop a managed model", "409 while it serves requests: it is never cut off."),
          ("restart", "Restart a managed model with its current flags", "409 while it serves requests."),
      )),
)  # fmt: skip

STATUS_TEXT = {
    200: "OK",
    400: "Invalid request: `param` names the field or parameter",
    401: "Missing, unknown, revoked or expired API key",
    403: "The key may not use this model, or lacks the scope",
    404: "No such model (or node, or samples yet)",
    409: "The managed model is serving requests",
    413: "Request body larger than MAX_REQUEST_BYTES (or an audio file over MAX_AUDIO_BYTES)",
    429: "Over one of the key's limits",
    501: "The backend does not serve this endpoint (a llama-server older than it, or not started for it)",
    502: "The backend failed or closed the stream",
    503: "No backend available",
    504: "The backend did not answer within the model's timeout",
    529: "No backend available, or the device sheds load (Anthropic's overloaded_error)",
}
REQUEST_ID = {"description": "The request log row's id", "required": True, "schema": {"type": "string"}}
RETRY_AFTER = {"description": "Seconds to wait", "required": True, "schema": {"type": "integer"}}
# Each server-sent event carries one JSON chunk as `data`; the last one is `[DONE]` (none after an error event).
EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}


def _response(operation: Operation, status: int) -> dict[str, Any]:
    if status == 200 or (operation.path == "/readyz" and status == 503):
        content: dict[str, Any] = {"application/json": {"schema": operation.ok}}
        if operation.stream:
            content["text/event-stream"] = {"schema": EVENT}
        if operation.text:
            content["text/plain"] = {"schema": {"type": "string"}}
    else:
        content = {"application/json": {"schema": ANTHROPIC_ERROR if operation.anthropic else ERROR}}
    response: dict[str, Any] = {"description": STATUS_TEXT[status], "content": content}
    headers = {}
    if operation.path.startswith("/v1/"):
        headers["X-Request-Id"] = REQUEST_ID
    if status == 429 and not operation.anthropic:
        headers["Retry-After"] = RETRY_AFTER
    if headers:
        response["headers"] = headers
    return response


def _operation(operation: Operation) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "responses": {str(status): _response(operation, status) for status in operation.statuses},
    }
    if operation.description:
        spec["description"] = operation.description
    if not operation.public:
        spec["security"] = BEARER
    parameters = [param.openapi() for param in operation.parameters]
    if operation.anthropic:
        parameters.append(X_API_KEY)
    if "{model_id}" in operation.path:
        parameters.append({"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}})
    if parameters:
        spec["parameters"] = parameters
    if operation.body:
        schema = body_schema(operation.body())
        media_type = "multipart/form-data" if getattr(operation.body, "form", False) else "application/json"
        spec["requestBody"] = {"required": True, "content": {media_type: {"schema": schema}}}
    return spec


def document(base_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Jetson LLM Gateway",
            "version": "1",
            "description": "OpenAI-compatible API over llama-server.",
        },
        "servers": [{"url": base_url}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type", "param", "code"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": "string", "nullable": True},
                                "code": {"type": "string", "nullable": True},
                            },
                        }
                    },
                },
                "AnthropicError": {
                    "type": "object",
                    "required": ["type", "error"],
                    "properties": {
                        "type": {"type": "string", "enum": ["error"]},
                        "error": {
                            "type": "object",
                            "required": ["type", "message"],
                            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                },
                "Model": MODEL_SCHEMA,
            },
        },
        "paths": paths,
    }
