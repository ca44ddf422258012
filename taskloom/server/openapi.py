"""The OpenAPI 3.1 description of the HTTP API, and a minimal HTML page that lists it.

Each route module describes its own routes next to their code (``openapi_paths``); :func:`build_openapi`
joins them with the shared schemas below. ``tests/integration/test_server.py`` checks that every route
the app serves is described, and ``test_server_fuzz.py`` fuzzes the app from this document.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from taskloom.events import EventType
from taskloom.store.base import ExecutionStatus

TITLE = "taskloom"

_ERROR_TEXT = {
    400: "a header is malformed (a Last-Event-ID that is not an ASCII seq); the message names it",
    401: "no API token, or a wrong one (see the WWW-Authenticate header)",
    404: "no such execution, workflow, secret or route",
    409: (
        "the execution or instance is not in a state that allows this (not paused, already finished), or no "
        "worker serves a task target that POST /instances was asked to queue"
    ),
    413: "the request body is too large",
    415: "the request body is not JSON",
    422: "the request is malformed; the message names the field or parameter at fault",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def errors(*codes: int) -> dict[str, Any]:
    """The shared error responses for ``codes``."""
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


_NULLABLE_STRING = {"type": ["string", "null"]}
_ANY = {"description": "any JSON value"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong and what to do about it"},
            "type": {"type": "string", "description": "the taskloom error a client raises for it"},
        },
    },
    "ExecutionStatus": {"type": "string", "enum": list(ExecutionStatus.ALL)},
    "StartRequest": {
        "type": "object",
        "required": ["workflow"],
        "additionalProperties": False,
        "properties": {
            "workflow": {
                "type": "string",
                "minLength": 1,
                "description": "a workflow name, or module:qualname, from the modules the server was started with",
            },
            "input": {**_ANY, "description": "the workflow's input (ctx.input)"},
        },
    },
    "Started": {
        "type": "object",
        "required": ["execution_id", "workflow", "status"],
        "properties": {
            "execution_id": {"type": "string"},
            "workflow": {"type": "string"},
            "status": {"const": ExecutionStatus.QUEUED},
        },
    },
    "ResumeRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"input": {**_ANY, "description": "what the pending pause() returns"}},
    },
    "Accepted": {
        "type": "object",
        "required": ["execution_id", "status"],
        "properties": {"execution_id": {"type": "string"}, "status": ref("ExecutionStatus")},
    },
    "ExecutionSummary": {
        "type": "object",
        "required": ["execution_id", "workflow", "target", "status", "created_at", "updated_at", "output"],
        "properties": {
            "execution_id": {"type": "string"},
            "workflow": {"type": "string"},
            "target": {**_NULLABLE_STRING, "description": "module:qualname of the workflow's code"},
            "status": ref("ExecutionStatus"),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "output": {**_ANY, "description": "result (completed) or {type, message} (failed), as a JSON view"},
        },
    },
    "Execution": {
        "allOf": [
            ref("ExecutionSummary"),
            {
                "type": "object",
                "required": ["input"],
                "properties": {"input": {**_ANY, "description": "the workflow's input, as a JSON view"}},
            },
        ]
    },
    "ExecutionList": {
        "type": "object",
        "required": ["executions"],
        "properties": {"executions": {"type": "array", "items": ref("ExecutionSummary")}},
    },
    "Event": {
        "type": "object",
        "required": ["seq", "type", "timestamp", "step_id", "name", "data"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "type": {"type": "string", "enum": [str(t) for t in EventType]},
            "timestamp": {"type": "string", "format": "date-time"},
            "step_id": {**_NULLABLE_STRING, "description": "the step's call position: '3', '3.1'"},
            "name": _NULLABLE_STRING,
            "data": {"type": "object", "description": "progress, log message, attempt, error text, ..."},
            "value": {**_ANY, "description": "the step's result, error or resume input, as a JSON view"},
        },
    },
    "EventList": {
        "type": "object",
        "required": ["execution_id", "status", "events"],
        "properties": {
            "execution_id": {"type": "string"},
            "status": ref("ExecutionStatus"),
            "events": {"type": "array", "items": ref("Event")},
        },
    },
    "SecretValue": {
        "type": "object",
        "required": ["value"],
        "additionalProperties": False,
        "properties": {"value": {"type": "string", "description": "the secret; never returned"}},
    },
    "SecretNames": {
        "type": "object",
        "required": ["names"],
        "properties": {"names": {"type": "array", "items": {"type": "string"}}},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    },
}

_PUBLIC: dict[str, Any] = {
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "Liveness check (no token needed)",
            "security": [],
            "responses": {"200": json_content(ref("Health"), "the server is up")},
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This description (no token needed: it holds no data)",
            "security": [],
            "responses": {"200": json_content({"type": "object"}, "the OpenAPI document")},
        }
    },
    "/docs": {
        "get": {
            "operationId": "docs",
            "summary": "A page listing the routes (no token needed)",
            "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    },
}


def build_openapi(path_groups: Iterable[Mapping[str, Any]], *, version: str) -> dict[str, Any]:
    """The whole document: the public routes, then each route module's ``openapi_paths`` in order."""
    paths: dict[str, Any] = {}
    for group in [_PUBLIC, *path_groups]:
        for path, operations in group.items():
            paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": version,
            "description": (
                "Start, follow, resume and cancel durable workflow executions, and manage secrets. Workers "
                "(`taskloom worker MODULE`) run what the server queues. Every route but /health, /openapi.json and "
                "/docs needs `Authorization: Bearer <token>` (TASKLOOM_API_TOKEN, or the api.token file the server "
                "creates on first start). Request bodies are JSON only."
            ),
        },
        "paths": paths,
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {
                f"E{code}": json_content(ref("Error"), text)
                | ({"headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}} if code == 401 else {})
                for code, text in _ERROR_TEXT.items()
            },
        },
    }


def docs_page(document: Mapping[str, Any]) -> str:
    """A small HTML page: one row per operation, and a link to the full description."""
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            open_route = operation.get("security") == []
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation.get('summary', ''))}</td><td>{'' if open_route else 'token'}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>taskloom API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em;border-bottom:1px solid #ddd}</style>"
        f"</head><body><h1>taskloom API</h1><p>{html.escape(document['info']['description'])}</p>"
        "<p>Full description: <a href='/openapi.json'>/openapi.json</a></p>"
        f"<table><tr><th>method</th><th>path</th><th>what</th><th>auth</th></tr>{''.join(rows)}</table>"
        "</body></html>"
    )
