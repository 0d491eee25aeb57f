"""The OpenAI API's serving object: chat and text completions on the shared engine.

Wire format as vLLM's server and the OpenAI SDK expect. Competition length control
does not apply here: the client sets budgets and stops. ``mode`` picks fast (thinking
off, reasoning removed) or slow (thinking on, reasoning returned as
``reasoning_content`` and ``reasoning``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from qaserve.api.body import model_response
from qaserve.api.errors import OpenAIError, server_error
from qaserve.api.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    ModelCard,
    ModelList,
    OpenAIRequest,
    UsageInfo,
)
from qaserve.core.prompts import PromptBuilder
from qaserve.core.reasoning import ReasoningSplitter, split_reasoning
from qaserve.core.sampling import configured_params
from qaserve.engine import Engine, GenParams, GenResult
from qaserve.settings import Settings

logger = logging.getLogger(__name__)

# OpenAI's own default when a completion request names no max_tokens.
COMPLETION_DEFAULT_MAX_TOKENS = 16


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _sse(payload: BaseModel | str) -> bytes:
    data = payload.model_dump_json() if isinstance(payload, BaseModel) else payload
    return f"data: {data}\n\n".encode()


async def _guarded(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream, or, when it fails midway, an error event and the closing [DONE]."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        logger.error("stream failed", exc_info=exc)
        yield _sse(server_error(exc).model())
        yield _sse("[DONE]")


def _event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    # A client that goes away cancels this stream, which closes the engine stream: vLLM aborts.
    return StreamingResponse(_guarded(events), media_type="text/event-stream")


async def _interleave(
    streams: list[AsyncIterator[GenResult]],
) -> AsyncIterator[tuple[int, GenResult]]:
    """Pieces of several streams as they come, tagged with the stream's index."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[GenResult]) -> None:
        try:
            async for piece in stream:
                await queue.put((index, piece))
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put((index, exc))
        else:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        open_streams = len(tasks)
        while open_streams:
            index, piece = await queue.get()
            if isinstance(piece, Exception):
                raise piece
            if piece is None:
                open_streams -= 1
            else:
                yield index, piece
    finally:
        for task in tasks:
            task.cancel()


class OpenAIServing:
    def __init__(self, settings: Settings, engine: Engine, prompts: PromptBuilder, created: int):
        self.settings = settings
        self.engine = engine
        self.prompts = prompts
        self.created = created
        self.configured = configured_params(settings)

    def models(self) -> ModelList:
        """The base model, then each LoRA adapter served beside it."""
        base = self.settings.model_name
        cards = [
            ModelCard(
                id=name,
                created=self.created,
                max_model_len=self.prompts.context_len,
                parent=None if name == base else base,
            )
            for name in [base, *self.settings.lora_adapters]
        ]
        return ModelList(data=cards)

    def _adapter_for(self, requested: str | None) -> str | None:
        try:
            return self.settings.adapter_for(requested)
        except LookupError as exc:
            raise OpenAIError(400, str(exc), "model", "model_not_found") from None

    def _gen_params(
        self, body: OpenAIRequest, prompt_len: int, prompt_field: str, default: int | None
    ) -> GenParams:
        """Sampling from the request (settings fill the gaps), checked against the context."""
        context_len = self.prompts.context_len
        room = context_len - prompt_len
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
        adapter = self._adapter_for(body.model)
        return replace(body.to_gen_params(self.configured, max_tokens), adapter=adapter)

    async def chat(self, body: ChatCompletionRequest) -> Response:
        thinking = body.thinking(self.settings.default_mode)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        prompt_ids = self.prompts.token_ids(self.prompts.render_chat(messages, thinking))
        params = self._gen_params(body, len(prompt_ids), "messages", None)
        reply = ChatReply(self.settings.model_name, thinking, len(prompt_ids))
        if body.stream:
            pieces = self.engine.stream(prompt_ids, params)
            return _event_stream(reply.events(pieces, body.include_usage))
        return model_response(reply.whole(await self.engine.generate(prompt_ids, params)))

    async def completions(self, body: CompletionRequest) -> Response:
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        ids = [self.prompts.tokenizer(p)["input_ids"] for p in prompts]
        if not all(ids):
            raise OpenAIError(400, "a prompt has no tokens: there is nothing to continue", "prompt")
        default = COMPLETION_DEFAULT_MAX_TOKENS
        params = [self._gen_params(body, len(i), "prompt", default) for i in ids]
        prompt_tokens = sum(map(len, ids))
        reply = CompletionReply(self.settings.model_name, prompt_tokens)
        if body.stream:
            streams = [self.engine.stream(i, p) for i, p in zip(ids, params, strict=True)]
            return _event_stream(reply.events(streams, body.include_usage))
        return model_response(reply.whole(await self.engine.generate_batch(ids, params)))


class ChatReply:
    """Chat completion objects and chunks for one request."""

    def __init__(self, model: str, thinking: bool, prompt_tokens: int):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.thinking = thinking
        self.prompt_tokens = prompt_tokens

    def whole(self, result: GenResult) -> ChatCompletionResponse:
        reasoning, answer = split_reasoning(result.text, self.thinking)
        shown = reasoning if self.thinking else None
        message = AssistantMessage(content=answer, reasoning_content=shown, reasoning=shown)
        choice = ChatChoice(
            index=0, message=message, finish_reason=_finish_reason(result.finish_reason)
        )
        return ChatCompletionResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[choice],
            usage=UsageInfo.of(self.prompt_tokens, result.output_tokens),
        )

    def _chunk(
        self, choices: list[ChatChunkChoice], usage: UsageInfo | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def _delta(self, delta: DeltaMessage, finish_reason: str | None = None) -> bytes:
        choice = ChatChunkChoice(index=0, delta=delta, finish_reason=finish_reason)
        return _sse(self._chunk([choice]))

    def _deltas(self, reasoning: str, answer: str) -> list[bytes]:
        chunks = []
        if reasoning and self.thinking:
            chunks.append(
                self._delta(DeltaMessage(reasoning_content=reasoning, reasoning=reasoning))
            )
        if answer:
            chunks.append(self._delta(DeltaMessage(content=answer)))
        return chunks

    async def events(
        self, pieces: AsyncIterator[GenResult], include_usage: bool
    ) -> AsyncIterator[bytes]:
        yield self._delta(DeltaMessage(role="assistant", content=""))
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
        yield self._delta(DeltaMessage(), _finish_reason(finish))
        if include_usage:
            yield _sse(self._chunk([], UsageInfo.of(self.prompt_tokens, tokens)))
        yield _sse("[DONE]")


class CompletionReply:
    """Text completion objects and chunks for one request (one choice per prompt)."""

    def __init__(self, model: str, prompt_tokens: int):
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.prompt_tokens = prompt_tokens

    def _response(
        self, choices: list[CompletionChoice], usage: UsageInfo | None = None
    ) -> CompletionResponse:
        return CompletionResponse(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def whole(self, results: list[GenResult]) -> CompletionResponse:
        choices = [
            CompletionChoice(index=n, text=r.text, finish_reason=_finish_reason(r.finish_reason))
            for n, r in enumerate(results)
        ]
        completion_tokens = sum(r.output_tokens for r in results)
        return self._response(choices, UsageInfo.of(self.prompt_tokens, completion_tokens))

    async def events(
        self, streams: list[AsyncIterator[GenResult]], include_usage: bool
    ) -> AsyncIterator[bytes]:
        tokens = 0
        async for index, piece in _interleave(streams):
            tokens += piece.output_tokens
            finish = _finish_reason(piece.finish_reason) if piece.finish_reason else None
            choice = CompletionChoice(index=index, text=piece.text, finish_reason=finish)
            yield _sse(self._response([choice]))
        if include_usage:
            yield _sse(self._response([], UsageInfo.of(self.prompt_tokens, tokens)))
        yield _sse("[DONE]")
