"""The OpenAPI 3.1 document of the JSON API, built from the operations table.

Written from :data:`~minibroker.http.operations.OPERATIONS` and the field
declarations, so a route, its parameters and its body schema cannot say
different things here and in the code that parses them.
"""

from __future__ import annotations

from typing import Any, Final

from minibroker._version import __version__
from minibroker.core.config import Limits
from minibroker.http import patterns
from minibroker.http.fields import field_schema, object_schema
from minibroker.http.operations import OPERATIONS, Operation
from minibroker.http.statuses import STATUS_BY_CODE


def error_schema(codes: list[str]) -> dict[str, Any]:
    """The shape of every error answer, with the wire codes a status carries."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": codes},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    }


#: The wire codes each HTTP status carries (``minibroker.http.statuses``), and
#: the adapter's own: 408 (a body that came too slowly), 415 (a body that is
#: not JSON), 404 (no such route) say ``bad_request`` / ``not_found``, 503
#: ``limit_exceeded`` (too many connections, ``minibroker/server/http_listener.py``).
_EXTRA_CODES: Final = {
    408: ["bad_request"],
    415: ["bad_request"],
    404: ["not_found"],
    503: ["limit_exceeded"],
}


def _codes_of(status: int) -> list[str]:
    codes = {code for code, s in STATUS_BY_CODE.items() if s == status}
    return sorted(codes.union(_EXTRA_CODES.get(status, ())))


_NAMESPACE: Final = {
    "name": "namespace",
    "in": "query",
    "required": False,
    "description": "the namespace (isolated set of names) to work in; default: the default one",
    "schema": patterns.NAMESPACE_SCHEMA,
}
#: Path parameter patterns: queues and logs are opaque names, topics and
#: subjects dot-separated words (``minibroker.http.patterns``).
_RESOURCE_PATTERNS: Final = {
    "queue": patterns.RESOURCE_IN_PATH,
    "log": patterns.RESOURCE_IN_PATH,
    "topic": patterns.TOPIC_IN_PATH,
    "subject": patterns.TOPIC_IN_PATH,
}
#: What any operation can answer: a bad namespace or field (400), no or a
#: wrong token (401, 403), a new namespace past ``max_namespaces`` (429
#: ``limit_exceeded``: any request may name one), a broker shutting down
#: (503), a bug (500).
_ALWAYS: Final = frozenset({400, 401, 403, 429, 500, 503})
#: What reading a JSON body can add: too slow (408), too large (413, also a
#: message over the size limit), not JSON (415), too many bodies held (429).
_BODY: Final = frozenset({408, 413, 415, 429})

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
        "401": {"$ref": "#/components/responses/Error401"},
    },
    "security": [{}, {"bearer": []}],
}


def _statuses(op: Operation) -> frozenset[int]:
    """Every status an operation can answer with an error."""
    statuses = _ALWAYS | op.errors
    if op.resource is not None:
        statuses |= {404}
    if op.fields and not op.query:
        statuses |= _BODY
    return statuses


def _error_responses(op: Operation) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in sorted(_statuses(op))}


def _operation(op: Operation, limits: Limits) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    if op.resource is not None:
        parameters.append(
            {
                "name": op.resource,
                "in": "path",
                "required": True,
                "schema": patterns.name_schema(_RESOURCE_PATTERNS[op.resource]),
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
                "schema": field_schema(f, limits, in_query=True),
            }
            for f in op.fields
        )
    elif op.fields:
        schema = object_schema(op.fields, limits)
        if op.body_rule is not None:
            schema.update(op.body_rule)
        # Without a body every field takes its default: a body is required
        # only where some field is (a message, delivery ids, a pattern ...).
        required = op.body_rule is not None or "required" in schema
        spec["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    return spec


def openapi_document(limits: Limits | None = None) -> dict[str, Any]:
    """The whole document, served at ``/openapi.json``; ``limits``: the
    server's, which bound waits, fetches and batches."""
    limits = limits or Limits()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, limits)
    statuses = sorted(set().union(*(_statuses(op) for op in OPERATIONS)))
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
                f"Error{status}": {
                    "description": "an error, with the wire protocol's code",
                    "content": {"application/json": {"schema": error_schema(_codes_of(status))}},
                }
                for status in statuses
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
