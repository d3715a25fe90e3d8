"""Real answers checked against the OpenAPI document's schema for them (monitor/operations/openapi.py), in plain tests."""

from __future__ import annotations

from typing import Any

from monitor.operations import openapi


def answer_schema(path: str, method: str = "get") -> dict[str, Any]:
    """The schema the document gives for a 200 answer of `path`."""
    response = openapi.document("http://testserver")["paths"][path][method]["responses"]["200"]
    return response["content"]["application/json"]["schema"]


def conforms(value: object, schema: dict[str, Any]) -> bool:
    """`value` against the keywords these answers' schemas use: type, nullable, enum, items, required, and properties
    (stricter than JSON Schema: no others allowed, so that the document lists every field) or additionalProperties."""
    if value is None:
        return bool(schema.get("nullable"))
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    if not isinstance(value, kinds[schema["type"]]) or (isinstance(value, bool) and schema["type"] != "boolean"):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, list):
        return all(conforms(item, schema["items"]) for item in value)
    if isinstance(value, dict) and "additionalProperties" in schema:
        return all(conforms(item, schema["additionalProperties"]) for item in value.values())
    if isinstance(value, dict) and "properties" not in schema:
        return True  # any object
    if isinstance(value, dict):
        properties = schema["properties"]
        return set(schema.get("required", ())) <= set(value) <= set(properties) and all(
            conforms(item, properties[name]) for name, item in value.items()
        )
    return True
