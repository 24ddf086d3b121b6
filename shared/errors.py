"""Errors as RFC 9457 ``application/problem+json``, naming the offending field; never a 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://matchnet.example.jp/problems/"
MAX_BODY_BYTES = 1_048_576
# Catalogue imports (``…:import``) carry whole files.
MAX_IMPORT_BODY_BYTES = 20 * 1_048_576


class Problem(Exception):
    """Raise from a route or domain function to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    kind: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # A repeated query parameter is named as the client wrote it: "prefecture", not "prefecture.0".
    in_query = bool(loc) and loc[0] == "query"
    parts = [
        str(p) for p in loc
        if p not in ("body", "query", "path", "header") and not (in_query and isinstance(p, int))
    ]
    return ".".join(parts) or "body"


def _validation_errors(error: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for item in error.errors():
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "extra_forbidden":
            message = "unknown field: not part of this resource"
        out.append({"field": _field_name(item.get("loc", ())), "message": message})
    return out


def validation_problem(error: ValidationError) -> Problem:
    """A 422 naming each offending field, for a model validated inside a route (e.g. a merged PATCH)."""
    errors = [
        {"field": _field_name(item.get("loc", ())), "message": str(item.get("msg", "invalid"))}
        for item in error.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, "Validation failed", detail, kind="validation", errors=errors)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.title, exc.detail, kind=exc.kind, instance=request.url.path,
            errors=exc.errors, headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            422, "Validation failed", detail, kind="validation", instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
        return problem_response(
            exc.status_code, titles.get(exc.status_code, "HTTP error"), str(exc.detail),
            instance=request.url.path, headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", "the error was logged", instance=request.url.path)


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over the limit, by header or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_IMPORT_BODY_BYTES if str(scope.get("path", "")).endswith(":import") else self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit)
            return
        seen = 0

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise Problem(413, "Payload too large", f"request bodies are limited to {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413, "Payload too large", f"request bodies are limited to {limit} bytes",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


# ---- the problem responses in OpenAPI ----------------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; ``errors`` names each offending field.",
    "required": ["type", "title", "status"],
    "examples": [{
        "type": "https://matchnet.example.jp/problems/validation", "title": "Validation failed", "status": 422,
        "detail": "prefecture: unknown prefecture code", "instance": "/v1/needs",
        "errors": [{"field": "prefecture", "message": "unknown prefecture code"}],
    }],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "What kind of problem, as a URI."},
        "title": {"type": "string", "description": "Short, the same for every problem of this type."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status.",
                   "examples": [422]},
        "detail": {"type": "string", "description": "What went wrong this time."},
        "instance": {"type": "string", "description": "The path of the request."},
        "errors": {
            "type": "array",
            "description": "One entry per offending field.",
            "examples": [[{"field": "prefecture", "message": "unknown prefecture code"}]],
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string", "description": "The field, dotted for nested ones.",
                              "examples": ["prefecture"]},
                    "message": {"type": "string", "description": "What is wrong with it.",
                                "examples": ["unknown prefecture code"]},
                },
            },
        },
    },
}

_PROBLEM_EXAMPLES: dict[int, tuple[str, str, dict[str, Any]]] = {
    401: ("Unauthorized", "Missing, unknown or revoked API key",
          {"detail": "send a valid API key as 'Authorization: Bearer <key>'"}),
    403: ("Forbidden", "The key's role may not do this", {"detail": "this action needs one of the roles: admin"}),
    404: ("Not found", "No such resource, or not visible to the caller", {"detail": "no need need_0190f3"}),
    400: ("Unreadable file", "The body cannot be read as a whole", {"detail": "CSV columns named twice: title"}),
    409: ("Conflict", "The request conflicts with the current state", {}),
    412: ("Precondition failed", "If-Match names an older version", {"detail": "the seed is at version 3"}),
    415: ("Unsupported media type", "Another body type than the route reads",
          {"detail": "send CSV as text/csv or JSON Lines as application/x-ndjson"}),
    428: ("Precondition required", "A change needs If-Match", {"detail": "send If-Match with the ETag you read"}),
    413: ("Payload too large", "The body is over 1 MiB",
          {"detail": f"request bodies are limited to {MAX_BODY_BYTES} bytes"}),
    422: ("Validation failed", "A field is missing or invalid; each one is named", {
        "detail": "prefecture: String should match pattern '^(0[1-9]|[1-3][0-9]|4[0-7])$'",
        "errors": [{"field": "prefecture", "message": "String should match pattern '^(0[1-9]|[1-3][0-9]|4[0-7])$'"}],
    }),
    503: ("Not ready", "A dependency is unreachable, or the service is shutting down",
          {"detail": "database: ok; broker: unreachable; workers: ok"}),
}


def problem_openapi_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of a problem with ``status``, with an example."""
    title, description, extra = _PROBLEM_EXAMPLES.get(status, ("HTTP error", "An error", {}))
    example = {"type": PROBLEM_BASE + title.lower().replace(" ", "-"), "title": title, "status": status,
               "instance": "/v1/needs", **extra}
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example}},
    }
