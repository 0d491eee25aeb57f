"""JSON request bodies parsed with orjson whatever the Content-Type, and orjson responses."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from qaserve.api.deps import ApiConfig

Body = TypeVar("Body", bound=BaseModel)


class OrjsonResponse(JSONResponse):
    def render(self, content) -> bytes:
        return orjson.dumps(content)


def model_response(model: BaseModel, headers: dict[str, str] | None = None) -> OrjsonResponse:
    """A response body from its model, without FastAPI validating it a second time."""
    return OrjsonResponse(model.model_dump(), headers=headers)


def invalid_request(kind: str, loc: tuple, msg: str, value) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


class BodyTooLarge(Exception):
    """A request body past MAX_REQUEST_BYTES (413)."""

    def __init__(self, limit: int, seen: int):
        super().__init__(f"request body of {seen}+ bytes exceeds MAX_REQUEST_BYTES={limit}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as its declared or received size passes ``limit``: an
    oversized body is never buffered whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, size)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json_body(request: Request, model: type[BaseModel], limit: int):
    """Parse the body as JSON even without a JSON Content-Type (plain curl sends a form type)."""
    raw = await read_body(request, limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(
            "json_invalid", ("body",), f"body is not valid JSON: {exc}", None
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


@functools.cache
def json_body(model: type[Body]) -> Callable[..., Awaitable[Body]]:
    """A dependency that gives a route its body as ``model``: parsed by hand (so no
    Content-Type is required and an oversized body is refused as it streams in), its
    schema documented with ``json_body_schema``. One dependency per model, so that FastAPI
    parses a body once however many dependencies of a route take it."""

    async def parsed(request: Request, api: ApiConfig) -> Body:
        return await parse_json_body(request, model, api.max_request_bytes)

    return parsed


def _inline_refs(node, defs: dict):
    """The schema with every ``#/$defs/..`` reference replaced by its definition."""
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline_refs(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    inlined = {key: _inline_refs(value, defs) for key, value in node.items() if key != "$defs"}
    if "discriminator" in node:  # its mapping names the definitions: the property suffices
        inlined["discriminator"] = {"propertyName": node["discriminator"]["propertyName"]}
    return inlined


def json_body_schema(model: type[BaseModel]) -> dict:
    """OpenAPI description of a body that is parsed by hand. The schema is self-contained:
    pydantic's ``#/$defs`` references would not resolve inside the OpenAPI document."""
    full = model.model_json_schema()
    schema = _inline_refs(full, full.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
