"""The OpenAPI document of this server's public API, built from the gateway's own request serializers."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from gateway import schemas

ERROR = {"$ref": "#/components/schemas/Error"}
BEARER = [{"bearer": []}]


def field_schema(field: serializers.Field) -> dict[str, Any]:
    """A JSON Schema for one serializer field: its type, bounds, choices and null-ability."""
    if isinstance(field, serializers.ListSerializer):
        schema: dict[str, Any] = {"type": "array", "items": body_schema(field.child)}
    elif isinstance(field, serializers.Serializer):
        schema = body_schema(field)
    elif isinstance(field, serializers.ChoiceField):
        schema = {"type": "string", "enum": list(field.choices)}
    elif isinstance(field, serializers.BooleanField):
        schema = {"type": "boolean"}
    elif isinstance(field, serializers.IntegerField):
        schema = {"type": "integer"}
    elif isinstance(field, serializers.FloatField):
        schema = {"type": "number"}
    elif isinstance(field, serializers.CharField):
        schema = {"type": "string"}
    else:
        # The gateway's own fields accept several JSON types (a string or a list, say): name them.
        types = getattr(field, "types", None)
        names = {str: "string", list: "array", dict: "object", int: "integer", float: "number", bool: "boolean"}
        kinds = sorted({names[t] for t in types if t in names}) if types else []
        schema = (
            {"type": kinds[0]} if len(kinds) == 1 else {"oneOf": [{"type": kind} for kind in kinds]} if kinds else {}
        )
    for attribute, keyword in (("min_value", "minimum"), ("max_value", "maximum")):
        if getattr(field, attribute, None) is not None:
            schema[keyword] = getattr(field, attribute)
    if getattr(field, "allow_null", False):
        schema["nullable"] = True
    if field.help_text:
        schema["description"] = str(field.help_text)
    return schema


def body_schema(serializer: serializers.Serializer) -> dict[str, Any]:
    fields = serializer.fields
    return {
        "type": "object",
        "properties": {name: field_schema(field) for name, field in fields.items()},
        "required": [name for name, field in fields.items() if field.required],
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(ERROR, "Error in OpenAI's shape") for status in statuses}


def _post(summary: str, serializer: type[serializers.Serializer], stream: bool) -> dict[str, Any]:
    ok = _json({"type": "object"})
    if stream:
        ok["content"]["text/event-stream"] = {"schema": {"type": "string", "description": "with `stream: true`"}}
    return {
        "post": {
            "summary": summary,
            "security": BEARER,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(serializer())}}},
            "responses": {"200": ok, **_errors(400, 401, 403, 404, 413, 429, 503, 504)},
        }
    }


def _get(summary: str, params: tuple[tuple[str, str], ...] = (), security: list | None = BEARER) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403)},
    }
    if security:
        operation["security"] = security
    if params:
        operation["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
            for name, text in params
        ]
    return {"get": operation}


def document(base_url: str) -> dict[str, Any]:
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
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                n: {"type": "string", "nullable": True} for n in ("message", "type", "param", "code")
                            },
                        }
                    },
                }
            },
        },
        "paths": {
            "/v1/chat/completions": _post("Chat completion (text or vision)", schemas.ChatRequestSerializer, True),
            "/v1/completions": _post("Legacy text completion", schemas.CompletionRequestSerializer, True),
            "/v1/embeddings": _post(
                "Embeddings of a string or a list of strings", schemas.EmbeddingRequestSerializer, False
            ),
            "/v1/models": _get("Models this key may use"),
            "/v1/models/{model_id}": {
                "get": {
                    **_get("One model")["get"],
                    "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                }
            },
            "/health": _get("Every backend's status, latency and slots", security=None),
            "/livez": _get("The process answers", security=None),
            "/readyz": _get("Ready to serve: database reachable", security=None),
            "/system/stats": _get(
                "The newest metrics sample of a node (key with the monitoring scope)", (("node", "node name"),)
            ),
            "/api/nodes": _get("Sampled nodes and the metric names"),
            "/api/metrics/history": _get(
                "A metric's history, downsampled",
                (
                    ("metric", "e.g. cpu_percent"),
                    ("node", "node name"),
                    ("since", "e.g. 1h or an ISO date"),
                    ("step", "seconds"),
                ),
            ),
            "/api/logs": _get(
                "Request log rows, newest first (key with the logs scope)",
                (
                    ("since", "ISO date-time"),
                    ("until", "ISO date-time"),
                    ("model", ""),
                    ("key", "key prefix or id"),
                    ("status", "e.g. 404 or 5xx"),
                    ("endpoint", ""),
                    ("limit", "rows per page"),
                    ("cursor", ""),
                ),
            ),
            "/api/usage": _get(
                "Token usage per hour or day",
                (("group", "hour|day"), ("by", "model|key"), ("since", ""), ("until", "")),
            ),
        },
    }
