"""Validate a document against a JSON Schema: ``jsonschema`` when installed, else a hand check.

The hand check covers the keywords our shipped schemas use: type (one or a list), const, enum,
required, properties, additionalProperties (bool or schema), items, minimum. It returns the
first problem as "path: message" (or None), like ``jsonschema.validate`` raising.
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def problem(doc: Any, schema: dict[str, Any]) -> str | None:
    """The first schema violation of ``doc`` (None when valid)."""
    try:
        import jsonschema
    except ImportError:
        return _check(doc, schema, "$")
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as exc:
        return f"{exc.json_path}: {exc.message}"
    return None


def _check(value: Any, schema: dict[str, Any], path: str) -> str | None:
    if "const" in schema and value != schema["const"]:
        return f"{path}: expected {schema['const']!r}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} is not one of {schema['enum']!r}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return f"{path}: {value!r} is not of type {types}"
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        return f"{path}: {value} < minimum {schema['minimum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{path}: missing required property {key!r}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                found = _check(item, props[key], f"{path}.{key}")
            elif extra is False:
                found = f"{path}: unexpected property {key!r}"
            elif isinstance(extra, dict):
                found = _check(item, extra, f"{path}.{key}")
            else:
                found = None
            if found:
                return found
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found = _check(item, schema["items"], f"{path}[{i}]")
            if found:
                return found
    return None
