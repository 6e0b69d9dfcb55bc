"""The OpenAPI 3.1 document of the JSON API, built from the operations table.

Written from :data:`~minibroker.http.operations.OPERATIONS` and the field
declarations, so a route, its parameters and its body schema cannot say
different things here and in the code that parses them.
"""

from __future__ import annotations

from typing import Any, Final

from minibroker._version import __version__
from minibroker.http.fields import field_schema, object_schema
from minibroker.http.operations import OPERATIONS, Operation
from minibroker.http.statuses import STATUS_BY_CODE

ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": sorted(STATUS_BY_CODE)},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_NAMESPACE: Final = {
    "name": "namespace",
    "in": "query",
    "required": False,
    "description": "the namespace (isolated set of names) to work in; default: the default one",
    "schema": {"type": "string", "maxLength": 128},
}

_OVERVIEW: Final = {
    "operationId": "overview",
    "summary": "Everything the dashboard shows: every namespace's queues, subscriptions, "
    "bindings, logs and request/reply state, and the connections",
    "responses": {
        "200": {
            "description": "a snapshot",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["namespaces", "connections", "at"],
                        "properties": {
                            "namespaces": {"type": "array", "items": {"type": "object"}},
                            "connections": {"type": "array", "items": {"type": "object"}},
                            "at": {"type": "number"},
                        },
                    }
                }
            },
        },
        "401": {"$ref": "#/components/responses/Error"},
    },
    "security": [{}, {"bearer": []}],
}


def _error_responses(op: Operation) -> dict[str, Any]:
    """Every status an operation can answer with an error (all share one schema)."""
    statuses = {400, 401, 403, 404, 409, 413, 415, 429, 500, 503, 507}
    if op.op == "request":
        statuses |= {502, 504}
    if op.op == "read":
        statuses.add(416)
    error = {"$ref": "#/components/responses/Error"}
    return {str(s): error for s in sorted(statuses)}


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    if op.resource is not None:
        parameters.append(
            {
                "name": op.resource,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
        )
    parameters.append(_NAMESPACE)
    spec: dict[str, Any] = {
        "operationId": op.op,
        "summary": op.summary,
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "done",
                "content": {"application/json": {"schema": op.answer or {"type": "object"}}},
            },
            **_error_responses(op),
        },
        "security": [{}, {"bearer": []}],
    }
    if op.query:
        parameters.extend(
            {
                "name": f.name,
                "in": "query",
                "required": f.required,
                "schema": field_schema(f, in_query=True),
            }
            for f in op.fields
        )
    elif op.fields:
        spec["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": object_schema(op.fields)}},
        }
    return spec


def openapi_document() -> dict[str, Any]:
    """The whole document, served at ``/openapi.json``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    paths["/v1/overview"] = {"get": _OVERVIEW}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "minibroker HTTP API",
            "version": __version__,
            "description": "Queues, topics, logs and request/reply over JSON. See docs/http.md.",
        },
        "paths": paths,
        "components": {
            "responses": {
                "Error": {
                    "description": "an error, with the wire protocol's code",
                    "content": {"application/json": {"schema": ERROR_SCHEMA}},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
