"""Routes of the OpenAI-compatible API under /v1, and vLLM's /tokenize and /detokenize beside
it (same key rule); the work is in OpenAIServing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from qaserve.api.admission import Ticket, admitted
from qaserve.api.auth import check_api_key
from qaserve.api.body import json_body, json_body_schema, model_response
from qaserve.api.disconnect import unless_disconnected
from qaserve.api.errors import ErrorResponse, documented_errors
from qaserve.api.models import ModelList
from qaserve.api.openai.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from qaserve.api.openai.responses import ResponseObject, ResponsesRequest
from qaserve.api.openai.serving import OpenAIServing

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(check_api_key)],
    responses=documented_errors(ErrorResponse, 400, 401, 413, 500, 503),
)


# One server-sent event: "data:" holds a JSON chunk, an error object, or "[DONE]"; on
# /v1/responses "event:" names the typed event "data:" holds.
SSE_EVENT = {
    "type": "object",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    "required": ["data"],
}
STREAM_NOTE = (
    "With `stream: true`: server-sent events of chunks, ending with `data: [DONE]`; on "
    "/v1/responses OpenAI's typed events, ending with `response.completed` or "
    "`response.incomplete`."
)


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.openai_serving


Serving = Annotated[OpenAIServing, Depends(_serving)]


@router.get("/models", response_model=ModelList)
async def list_models(serving: Serving):
    return model_response(serving.models.model_list())


def _generation_route(path: str, request_model: type[BaseModel], response_model: type[BaseModel]):
    return router.post(
        path,
        response_model=response_model,
        description=STREAM_NOTE,
        responses={
            200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}},
            **documented_errors(ErrorResponse, 429),
        },
        openapi_extra=json_body_schema(request_model),
    )


@_generation_route("/chat/completions", ChatCompletionRequest, ChatCompletionResponse)
async def chat_completions(
    request: Request,
    serving: Serving,
    body: Annotated[ChatCompletionRequest, Depends(json_body(ChatCompletionRequest))],
    ticket: Annotated[Ticket, Depends(admitted(ChatCompletionRequest))],
):
    # A stream stops when its client leaves by itself (StreamingResponse sees it).
    work = serving.chat(body, ticket.abandoned)
    return await unless_disconnected(request, work, ticket.abandoned)


@_generation_route("/completions", CompletionRequest, CompletionResponse)
async def completions(
    request: Request,
    serving: Serving,
    body: Annotated[CompletionRequest, Depends(json_body(CompletionRequest))],
    ticket: Annotated[Ticket, Depends(admitted(CompletionRequest))],
):
    work = serving.completions(body, ticket.abandoned)
    return await unless_disconnected(request, work, ticket.abandoned)


@_generation_route("/responses", ResponsesRequest, ResponseObject)
async def responses(
    request: Request,
    serving: Serving,
    body: Annotated[ResponsesRequest, Depends(json_body(ResponsesRequest))],
    ticket: Annotated[Ticket, Depends(admitted(ResponsesRequest))],
):
    work = serving.responses(body, ticket.abandoned)
    return await unless_disconnected(request, work, ticket.abandoned)


# vLLM's server keeps these two at the root, not under /v1.
tokens_router = APIRouter(
    dependencies=[Depends(check_api_key)],
    responses=documented_errors(ErrorResponse, 400, 401, 413, 500),
)


@tokens_router.post(
    "/tokenize", response_model=TokenizeResponse, openapi_extra=json_body_schema(TokenizeRequest)
)
async def tokenize(
    serving: Serving, body: Annotated[TokenizeRequest, Depends(json_body(TokenizeRequest))]
):
    return model_response(serving.tokenize(body))


@tokens_router.post(
    "/detokenize",
    response_model=DetokenizeResponse,
    openapi_extra=json_body_schema(DetokenizeRequest),
)
async def detokenize(
    serving: Serving, body: Annotated[DetokenizeRequest, Depends(json_body(DetokenizeRequest))]
):
    return model_response(serving.detokenize(body))
