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
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
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
COMPLETION_MAX_TOKENS = 16


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
        self,
        body: OpenAIRequest,
        adapter: str | None,
        prompt_len: int,
        prompt_field: str,
        default: int | None,
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
        return replace(body.to_gen_params(self.configured, max_tokens), adapter=adapter)

    def _choices(self, params: GenParams, body: OpenAIRequest) -> list[GenParams]:
        """One GenParams per choice: seeded requests give choice i the seed plus i, as vLLM."""
        if params.seed is None:
            return [params] * body.n
        return [replace(params, seed=params.seed + i) for i in range(body.n)]

    async def chat(self, body: ChatCompletionRequest) -> Response:
        adapter = self._adapter_for(body.model)  # an unknown model: refused before any work
        thinking = body.thinking(self.settings.default_mode)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        prompt_ids = self.prompts.token_ids(self.prompts.render_chat(messages, thinking))
        choices = self._choices(
            self._gen_params(body, adapter, len(prompt_ids), "messages", None), body
        )
        reply = ChatReply(self.settings.model_name, thinking, len(prompt_ids))
        if body.stream:
            streams = [self.engine.stream(prompt_ids, p) for p in choices]
            return _event_stream(reply.events(streams, body.include_usage))
        results = await self.engine.generate_batch([prompt_ids] * len(choices), choices)
        return model_response(reply.whole(results))

    async def completions(self, body: CompletionRequest) -> Response:
        adapter = self._adapter_for(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) * body.n > self.settings.max_batch_size:
            message = (
                f"{len(prompts)} prompts times n={body.n} exceed the "
                f"{self.settings.max_batch_size} choices a request may ask for (MAX_BATCH_SIZE)"
            )
            raise OpenAIError(400, message, "n")
        ids = [self.prompts.tokenizer(p)["input_ids"] for p in prompts]
        if not all(ids):
            raise OpenAIError(400, "a prompt has no tokens: there is nothing to continue", "prompt")
        # Choice index = prompt index * n + choice number, as vLLM numbers them.
        choice_ids: list[list[int]] = []
        choice_params: list[GenParams] = []
        for prompt_ids in ids:
            params = self._gen_params(
                body, adapter, len(prompt_ids), "prompt", COMPLETION_MAX_TOKENS
            )
            choice_params += self._choices(params, body)
            choice_ids += [prompt_ids] * body.n
        reply = CompletionReply(self.settings.model_name, sum(map(len, ids)))
        if body.stream:
            streams = list(map(self.engine.stream, choice_ids, choice_params))
            return _event_stream(reply.events(streams, body.include_usage))
        results = await self.engine.generate_batch(choice_ids, choice_params)
        return model_response(reply.whole(results))


class ChatReply:
    """Chat completion objects and chunks for one request, one choice per engine request."""

    def __init__(self, model: str, thinking: bool, prompt_tokens: int):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.thinking = thinking
        self.prompt_tokens = prompt_tokens

    def _choice(self, index: int, result: GenResult) -> ChatChoice:
        reasoning, answer = split_reasoning(result.text, self.thinking)
        shown = reasoning if self.thinking else None
        return ChatChoice(
            index=index,
            message=AssistantMessage(content=answer, reasoning_content=shown, reasoning=shown),
            logprobs=ChatLogprobs.of(result.logprobs),
            finish_reason=_finish_reason(result.finish_reason),
        )

    def whole(self, results: list[GenResult]) -> ChatCompletionResponse:
        return ChatCompletionResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[self._choice(i, r) for i, r in enumerate(results)],
            usage=UsageInfo.of(self.prompt_tokens, sum(r.output_tokens for r in results)),
        )

    def _chunk(
        self, choices: list[ChatChunkChoice], usage: UsageInfo | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def _delta(self, index: int, delta: DeltaMessage, **extra) -> bytes:
        return _sse(self._chunk([ChatChunkChoice(index=index, delta=delta, **extra)]))

    def _deltas(self, reasoning: str, answer: str) -> list[DeltaMessage]:
        deltas = []
        if reasoning and self.thinking:
            deltas.append(DeltaMessage(reasoning_content=reasoning, reasoning=reasoning))
        if answer:
            deltas.append(DeltaMessage(content=answer))
        return deltas

    def _piece(self, index: int, deltas: list[DeltaMessage], piece: GenResult) -> list[bytes]:
        """A piece's deltas; its logprobs ride on the last one (on an empty delta if none)."""
        logprobs = ChatLogprobs.of(piece.logprobs)
        if logprobs is not None and not deltas:
            deltas = [DeltaMessage()]
        last = len(deltas) - 1
        return [
            self._delta(index, delta, logprobs=logprobs if n == last else None)
            for n, delta in enumerate(deltas)
        ]

    def _close(self, index: int, splitter: ReasoningSplitter, finish: str | None) -> list[bytes]:
        """What the splitter still held back, then the choice's finish reason."""
        chunks = [self._delta(index, delta) for delta in self._deltas(*splitter.finish())]
        chunks.append(self._delta(index, DeltaMessage(), finish_reason=_finish_reason(finish)))
        return chunks

    async def events(
        self, streams: list[AsyncIterator[GenResult]], include_usage: bool
    ) -> AsyncIterator[bytes]:
        splitters = [ReasoningSplitter(self.thinking) for _ in streams]
        open_choices = set(range(len(streams)))
        for index in open_choices:
            yield self._delta(index, DeltaMessage(role="assistant", content=""))
        tokens = 0
        # Leaving this loop (client gone) cancels the engine streams at once.
        async for index, piece in _interleave(streams):
            tokens += piece.output_tokens
            deltas = self._deltas(*splitters[index].feed(piece.text))
            for chunk in self._piece(index, deltas, piece):
                yield chunk
            if piece.finish_reason:
                open_choices.discard(index)
                for chunk in self._close(index, splitters[index], piece.finish_reason):
                    yield chunk
        for index in sorted(open_choices):  # a stream that ended without saying why
            for chunk in self._close(index, splitters[index], None):
                yield chunk
        if include_usage:
            yield _sse(self._chunk([], UsageInfo.of(self.prompt_tokens, tokens)))
        yield _sse("[DONE]")


class CompletionReply:
    """Text completion objects and chunks for one request (n choices per prompt)."""

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
            CompletionChoice(
                index=n,
                text=r.text,
                logprobs=CompletionLogprobs.of(r.logprobs),
                finish_reason=_finish_reason(r.finish_reason),
            )
            for n, r in enumerate(results)
        ]
        completion_tokens = sum(r.output_tokens for r in results)
        return self._response(choices, UsageInfo.of(self.prompt_tokens, completion_tokens))

    async def events(
        self, streams: list[AsyncIterator[GenResult]], include_usage: bool
    ) -> AsyncIterator[bytes]:
        tokens = 0
        text_sent = [0] * len(streams)  # characters of each choice so far: logprob offsets
        async for index, piece in _interleave(streams):
            tokens += piece.output_tokens
            finish = _finish_reason(piece.finish_reason) if piece.finish_reason else None
            choice = CompletionChoice(
                index=index,
                text=piece.text,
                logprobs=CompletionLogprobs.of(piece.logprobs, text_sent[index]),
                finish_reason=finish,
            )
            text_sent[index] += len(piece.text)
            yield _sse(self._response([choice]))
        if include_usage:
            yield _sse(self._response([], UsageInfo.of(self.prompt_tokens, tokens)))
        yield _sse("[DONE]")
