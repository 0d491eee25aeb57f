"""OpenAI-compatible API under /v1, on the same engine (and batch) as /predict.

Wire format as vLLM's server and the OpenAI SDK expect. Competition length
control does not apply here: the client sets budgets and stops. ``mode`` picks
fast (thinking off, reasoning removed) or slow (thinking on, reasoning returned
as ``reasoning_content`` and ``reasoning``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from qaserve.auth import check_api_key
from qaserve.engine import GenParams, GenResult
from qaserve.errors import OpenAIError
from qaserve.jsonbody import json_body_schema, parse_json_body
from qaserve.reasoning import ReasoningSplitter, split_reasoning
from qaserve.service import Answerer, Overrides, sampling_params
from qaserve.settings import Settings

# Request fields that map one to one onto the server's sampling settings.
SAMPLING_FIELDS = {
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "seed",
}
# OpenAI's own default when a completion request names no max_tokens.
COMPLETION_DEFAULT_MAX_TOKENS = 16


# ---- requests -----------------------------------------------------------------


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)
    seed: int | None = None
    stop: StrictStr | list[StrictStr] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported")
        return value

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = Field(default=None, ge=1)
    mode: Literal["fast", "slow"] | None = None
    chat_template_kwargs: dict | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def thinking(self, default_mode: str) -> bool:
        if self.mode is not None:
            return self.mode == "slow"
        enable = (self.chat_template_kwargs or {}).get("enable_thinking")
        if enable is not None:
            return bool(enable)
        return default_mode == "slow"


class CompletionRequest(SamplingFields):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]


# ---- shared pieces ------------------------------------------------------------


def _answerer(request: Request) -> Answerer:
    return request.app.state.answerer


def _check_model(requested: str | None, settings: Settings) -> None:
    if requested is not None and requested != settings.model_name:
        message = (
            f"model {requested!r} is not served here; this server serves {settings.model_name!r}"
        )
        raise OpenAIError(400, message, "model", "model_not_found")


def _gen_params(
    body: SamplingFields, prompt_len: int, context_len: int, settings: Settings, default: int | None
) -> GenParams:
    """Sampling from the request (settings fill the gaps), checked against the context."""
    room = context_len - prompt_len
    prompt_field = "messages" if isinstance(body, ChatRequest) else "prompt"
    if room <= 0:
        message = f"the prompt is {prompt_len} tokens; the context holds {context_len}"
        raise OpenAIError(400, message, prompt_field, "context_length_exceeded")
    max_tokens = body.requested_max_tokens() or min(default or room, room)
    if max_tokens > room:
        message = (
            f"max_tokens={max_tokens} plus the {prompt_len}-token prompt exceed "
            f"the {context_len}-token context"
        )
        raise OpenAIError(400, message, "max_tokens", "context_length_exceeded")
    stop = [body.stop] if isinstance(body.stop, str) else body.stop or []
    fields = body.model_dump(include=SAMPLING_FIELDS)
    overrides = Overrides(**fields, max_tokens=max_tokens, stop=tuple(stop))
    return sampling_params(settings, overrides)


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return f"data: {data}\n\n".encode()


def _event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    # A client that goes away cancels this stream, which closes the engine stream: vLLM aborts.
    return StreamingResponse(events, media_type="text/event-stream")


async def _interleave(
    streams: list[AsyncIterator[GenResult]],
) -> AsyncIterator[tuple[int, GenResult]]:
    """Pieces of several streams as they come, tagged with the stream's index."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[GenResult]) -> None:
        async for piece in stream:
            await queue.put((index, piece))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        open_streams = len(tasks)
        while open_streams:
            index, piece = await queue.get()
            if piece is None:
                open_streams -= 1
            else:
                yield index, piece
        await asyncio.gather(*tasks)  # surfaces an engine error from any stream
    finally:
        for task in tasks:
            task.cancel()


# ---- routes -------------------------------------------------------------------

router = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)])


@router.get("/models")
async def list_models(request: Request):
    settings = request.app.state.settings
    model = {
        "id": settings.model_name,
        "object": "model",
        "created": request.app.state.started,
        "owned_by": "qaserve",
        "max_model_len": _answerer(request).prompts.context_len,
    }
    return {"object": "list", "data": [model]}


@router.post("/chat/completions", openapi_extra=json_body_schema(ChatRequest))
async def chat_completions(request: Request):
    body = await parse_json_body(request, ChatRequest)
    answerer, settings = _answerer(request), request.app.state.settings
    _check_model(body.model, settings)
    thinking = body.thinking(settings.default_mode)
    messages = [m.model_dump() for m in body.messages]
    prompt_ids = answerer.prompts.token_ids(answerer.prompts.render_chat(messages, thinking))
    params = _gen_params(body, len(prompt_ids), answerer.prompts.context_len, settings, None)
    reply = ChatReply(settings.model_name, thinking)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        pieces = answerer.engine.stream(prompt_ids, params)
        return _event_stream(reply.events(pieces, len(prompt_ids), include_usage))
    result = await answerer.engine.generate(prompt_ids, params)
    return reply.whole(result, len(prompt_ids))


class ChatReply:
    """Chat completion objects and chunks for one request."""

    def __init__(self, model: str, thinking: bool):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.thinking = thinking

    def _envelope(self, kind: str, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _reasoning_fields(self, reasoning: str | None) -> dict:
        # vLLM's Qwen3 parser says reasoning_content; newer vLLM releases say reasoning.
        return {"reasoning_content": reasoning, "reasoning": reasoning}

    def whole(self, result: GenResult, prompt_tokens: int) -> dict:
        reasoning, answer = split_reasoning(result.text, self.thinking)
        message = {
            "role": "assistant",
            "content": answer,
            **self._reasoning_fields(reasoning if self.thinking else None),
        }
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": _finish_reason(result.finish_reason),
        }
        reply = self._envelope("chat.completion", [choice])
        reply["usage"] = _usage(prompt_tokens, result.output_tokens)
        return reply

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return _sse(self._envelope("chat.completion.chunk", [choice]))

    def _deltas(self, reasoning: str, answer: str) -> list[bytes]:
        chunks = []
        if reasoning and self.thinking:
            chunks.append(self._chunk(self._reasoning_fields(reasoning)))
        if answer:
            chunks.append(self._chunk({"content": answer}))
        return chunks

    async def events(
        self, pieces: AsyncIterator[GenResult], prompt_tokens: int, include_usage: bool
    ) -> AsyncIterator[bytes]:
        yield self._chunk({"role": "assistant", "content": ""})
        splitter = ReasoningSplitter(self.thinking)
        tokens, finish = 0, None
        # Closing this stream (client gone) closes the engine stream at once.
        async with aclosing(pieces):
            async for piece in pieces:
                tokens += piece.output_tokens
                finish = piece.finish_reason or finish
                for chunk in self._deltas(*splitter.feed(piece.text)):
                    yield chunk
        for chunk in self._deltas(*splitter.finish()):
            yield chunk
        yield self._chunk({}, _finish_reason(finish))
        if include_usage:
            usage = self._envelope("chat.completion.chunk", [])
            usage["usage"] = _usage(prompt_tokens, tokens)
            yield _sse(usage)
        yield _sse("[DONE]")


@router.post("/completions", openapi_extra=json_body_schema(CompletionRequest))
async def completions(request: Request):
    body = await parse_json_body(request, CompletionRequest)
    answerer, settings = _answerer(request), request.app.state.settings
    _check_model(body.model, settings)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    ids = [answerer.prompts.tokenizer(p)["input_ids"] for p in prompts]
    context = answerer.prompts.context_len
    default = COMPLETION_DEFAULT_MAX_TOKENS
    params = [_gen_params(body, len(i), context, settings, default) for i in ids]
    prompt_tokens = sum(map(len, ids))
    envelope = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": settings.model_name,
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        streams = [answerer.engine.stream(i, p) for i, p in zip(ids, params, strict=True)]
        return _event_stream(_completion_events(envelope, streams, prompt_tokens, include_usage))
    results = await answerer.engine.generate_batch(ids, params)
    choices = [
        {
            "index": n,
            "text": r.text,
            "logprobs": None,
            "finish_reason": _finish_reason(r.finish_reason),
        }
        for n, r in enumerate(results)
    ]
    usage = _usage(prompt_tokens, sum(r.output_tokens for r in results))
    return {**envelope, "choices": choices, "usage": usage}


def _completion_choice(index: int, text: str, finish_reason: str | None) -> dict:
    finish = _finish_reason(finish_reason) if finish_reason else None
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


async def _completion_events(
    envelope: dict, streams: list[AsyncIterator[GenResult]], prompt_tokens: int, include_usage: bool
) -> AsyncIterator[bytes]:
    tokens = 0
    async for index, piece in _interleave(streams):
        tokens += piece.output_tokens
        choice = _completion_choice(index, piece.text, piece.finish_reason)
        yield _sse({**envelope, "choices": [choice]})
    if include_usage:
        yield _sse({**envelope, "choices": [], "usage": _usage(prompt_tokens, tokens)})
    yield _sse("[DONE]")
