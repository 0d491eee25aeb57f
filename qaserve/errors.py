"""Error responses: OpenAI's shape under /v1, FastAPI's 422 elsewhere."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError

from qaserve.jsonbody import OrjsonResponse


class OpenAIError(Exception):
    """An error as OpenAI sends it: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = "authentication_error" if status == 401 else "invalid_request_error"

    def response(self) -> OrjsonResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return OrjsonResponse({"error": error}, status_code=self.status)


def _param(loc: tuple) -> str | None:
    """The request field an error is about: its location without "body"."""
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) or None


async def _validation_error(request: Request, exc: RequestValidationError):
    if not request.url.path.startswith("/v1/"):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    message = "; ".join(f"{_param(e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return OpenAIError(400, message, _param(errors[0]["loc"]) if errors else None).response()


async def _openai_error(request: Request, exc: OpenAIError):
    return exc.response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OpenAIError, _openai_error)
