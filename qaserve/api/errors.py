"""Error responses in each API's own shape: OpenAI's under /v1, FastAPI's elsewhere.

Bad input is a 4xx naming the field; anything that fails inside (the engine, the
tokenizer) is a logged 500 in the same shape, never a plain-text page.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from qaserve.api.admission import AdmissionError
from qaserve.api.body import BodyTooLarge, OrjsonResponse
from qaserve.engine import EngineDeadError, RequestRefused

logger = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1/"
# vLLM's tokenizer routes, beside /v1: their errors come in the same shape.
OPENAI_ROOT_ROUTES = ("/tokenize", "/detokenize")


# ---- error bodies -------------------------------------------------------------


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """FastAPI's 422 body: each issue's ``loc`` names the field."""

    detail: list[ValidationIssue]


class ServerErrorResponse(BaseModel):
    detail: str


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: ErrorInfo


# What each error status means, for the OpenAPI document.
ERROR_DESCRIPTIONS = {
    400: "invalid request",
    401: "missing or invalid API key",
    413: "body over MAX_REQUEST_BYTES",
    422: "invalid request",
    429: "past the admission limits: retry after Retry-After seconds",
    500: "internal error",
    503: "the engine is dead, or the server is shutting down",
}


def documented_errors(model: type, *statuses: int) -> dict:
    """A router's ``responses`` for these error statuses, each with its body model."""
    return {
        status: {"model": model, "description": ERROR_DESCRIPTIONS[status]} for status in statuses
    }


class OpenAIError(Exception):
    """An error as OpenAI sends it: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.info = ErrorInfo(
            message=message,
            type=_error_type(status),
            param=param,
            code=code,
        )

    def model(self) -> ErrorResponse:
        return ErrorResponse(error=self.info)

    def response(self, headers: dict[str, str] | None = None) -> OrjsonResponse:
        return OrjsonResponse(self.model().model_dump(), status_code=self.status, headers=headers)


def _error_type(status: int) -> str:
    """OpenAI's error type for a status (its rate limits say which limit: "requests")."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


def server_error(exc: BaseException) -> OpenAIError:
    """What a client is told of a failure inside the server (the traceback goes to the log)."""
    if isinstance(exc, EngineDeadError):
        return OpenAIError(503, f"{exc}; the server exits to be restarted", None, "engine_dead")
    if isinstance(exc, AdmissionError):  # refused, or stopped by the drain
        return OpenAIError(exc.status, str(exc), None, exc.code)
    if isinstance(exc, RequestRefused):
        return OpenAIError(400, f"the engine refused the request: {exc}", None, "invalid_request")
    return OpenAIError(500, f"internal error: {type(exc).__name__}: {exc}", None, "internal_error")


def _param(loc: tuple) -> str | None:
    """The request field an error is about: its location without "body"."""
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) or None


def _is_openai(request: Request) -> bool:
    path = request.url.path
    return path.startswith(OPENAI_PREFIX) or path in OPENAI_ROOT_ROUTES


async def _validation_error(request: Request, exc: RequestValidationError):
    if not _is_openai(request):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    message = "; ".join(f"{_param(e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return OpenAIError(400, message, _param(errors[0]["loc"]) if errors else None).response()


async def _openai_error(request: Request, exc: OpenAIError):
    return exc.response()


def _in_route_shape(
    request: Request, error: OpenAIError, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    """``error`` in OpenAI's shape on the OpenAI routes, as FastAPI's ``detail`` elsewhere."""
    if _is_openai(request):
        return error.response(headers)
    return OrjsonResponse({"detail": error.info.message}, status_code=error.status, headers=headers)


async def _too_large(request: Request, exc: BodyTooLarge):
    return _in_route_shape(request, OpenAIError(413, str(exc), None, "request_too_large"))


async def _not_admitted(request: Request, exc: AdmissionError):
    return _in_route_shape(request, server_error(exc), exc.headers)


async def _server_error(request: Request, exc: Exception):
    if not isinstance(exc, EngineDeadError | RequestRefused):
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _in_route_shape(request, server_error(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OpenAIError, _openai_error)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(AdmissionError, _not_admitted)
    # A dead engine and a refused request are expected (and handled) here; anything else also
    # reaches the log.
    app.add_exception_handler(EngineDeadError, _server_error)
    app.add_exception_handler(RequestRefused, _server_error)
    app.add_exception_handler(Exception, _server_error)
