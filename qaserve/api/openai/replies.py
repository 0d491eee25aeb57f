"""The OpenAI objects of one reply, whole or as server-sent events: chat completions and
their chunks, text completions, one choice per engine request."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from qaserve.api.admission import Unfinished
from qaserve.api.errors import OpenAIError, server_error
from qaserve.api.openai.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    DeltaMessage,
    UsageInfo,
    prompt_logprobs_of,
)
from qaserve.api.openai.tools import DeltaToolCall, ToolUse
from qaserve.core.reasoning import ReasoningSplitter, split_reasoning
from qaserve.engine import GenResult, RequestRefused

logger = logging.getLogger(__name__)


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _sse(payload: BaseModel | str) -> bytes:
    data = payload.model_dump_json() if isinstance(payload, BaseModel) else payload
    return f"data: {data}\n\n".encode()


def _error_and_done(error: OpenAIError) -> list[bytes]:
    """How a completion stream ends when it fails: the error object, then [DONE]."""
    return [_sse(error.model()), _sse("[DONE]")]


async def _guarded(
    events: AsyncIterator[bytes], closing: Callable[[OpenAIError], list[bytes]]
) -> AsyncIterator[bytes]:
    """The stream, or, when it fails midway, the events ``closing`` ends it with."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        # The drain logs what it stops; a refused request is the client's error.
        if not isinstance(exc, Unfinished | RequestRefused):
            logger.error("stream failed", exc_info=exc)
        for event in closing(server_error(exc)):
            yield event


def event_stream(
    events: AsyncIterator[bytes], closing: Callable[[OpenAIError], list[bytes]] = _error_and_done
) -> StreamingResponse:
    """The events as server-sent events; ``closing`` gives the last ones of a failed stream."""
    # A client that goes away cancels this stream, which closes the engine stream: vLLM aborts.
    return StreamingResponse(_guarded(events, closing), media_type="text/event-stream")


async def _interleave(
    streams: list[AsyncIterator[GenResult]], abandoned: asyncio.Future[Unfinished]
) -> AsyncIterator[tuple[int, GenResult]]:
    """Pieces of several streams as they come, tagged with the stream's index; the drain's
    error, raised, once it abandons the request (``abandoned`` done)."""
    queue: asyncio.Queue = asyncio.Queue()

    def stop(done: asyncio.Future[Unfinished]) -> None:
        queue.put_nowait((None, done.result()))

    async def pump(index: int, stream: AsyncIterator[GenResult]) -> None:
        try:
            async for piece in stream:
                await queue.put((index, piece))
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put((index, exc))
        else:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    abandoned.add_done_callback(stop)
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
        abandoned.remove_done_callback(stop)
        for task in tasks:
            task.cancel()


class _StreamedChoice:
    """One streamed chat choice's text, split as it comes into reasoning and answer, the
    answer's possible tool calls held back until it is complete."""

    def __init__(self, thinking: bool, tools: ToolUse):
        self.reasoning = ReasoningSplitter(thinking)
        self.calls = tools.splitter()

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning, answer) text that is certain after this piece."""
        reasoning, answer = self.reasoning.feed(text)
        return reasoning, self.calls.feed(answer) if self.calls else answer

    def finish(self) -> tuple[str, str]:
        """(reasoning, answer) still held, once the text is complete; with calls possible,
        the answer is all that may be calls."""
        reasoning, answer = self.reasoning.finish()
        if self.calls is None:
            return reasoning, answer
        released = self.calls.feed(answer)
        return reasoning, released + self.calls.finish()


class ChatReply:
    """Chat completion objects and chunks for one request, one choice per engine request."""

    def __init__(self, model: str, thinking: bool, prompt_tokens: int, tools: ToolUse):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.thinking = thinking
        self.prompt_tokens = prompt_tokens
        self.tools = tools

    def _choice(self, index: int, result: GenResult) -> ChatChoice:
        reasoning, answer = split_reasoning(result.text, self.thinking)
        shown = reasoning if self.thinking else None
        content, calls = self.tools.calls(answer)
        message = AssistantMessage(
            content=content, tool_calls=calls, reasoning_content=shown, reasoning=shown
        )
        return ChatChoice(
            index=index,
            message=message,
            logprobs=ChatLogprobs.of(result.logprobs),
            finish_reason=self.tools.finish_reason(_finish_reason(result.finish_reason), calls),
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

    def _close(self, index: int, choice: _StreamedChoice, finish: str | None) -> list[bytes]:
        """What the splitters still held back (as text, or as the answer's tool calls), then
        the choice's finish reason."""
        reasoning, answer = choice.finish()
        content, calls = self.tools.calls(answer) if choice.calls else (answer, [])
        chunks = [self._delta(index, delta) for delta in self._deltas(reasoning, content or "")]
        if calls:
            pieces = [DeltaToolCall.of(n, call) for n, call in enumerate(calls)]
            chunks.append(self._delta(index, DeltaMessage(tool_calls=pieces)))
        reason = self.tools.finish_reason(_finish_reason(finish), calls)
        chunks.append(self._delta(index, DeltaMessage(), finish_reason=reason))
        return chunks

    async def events(
        self,
        streams: list[AsyncIterator[GenResult]],
        include_usage: bool,
        abandoned: asyncio.Future[Unfinished],
    ) -> AsyncIterator[bytes]:
        choices = [_StreamedChoice(self.thinking, self.tools) for _ in streams]
        open_choices = set(range(len(streams)))
        for index in open_choices:
            yield self._delta(index, DeltaMessage(role="assistant", content=""))
        tokens = 0
        # Leaving this loop (client gone) cancels the engine streams at once.
        async for index, piece in _interleave(streams, abandoned):
            tokens += piece.output_tokens
            deltas = self._deltas(*choices[index].feed(piece.text))
            for chunk in self._piece(index, deltas, piece):
                yield chunk
            if piece.finish_reason:
                open_choices.discard(index)
                for chunk in self._close(index, choices[index], piece.finish_reason):
                    yield chunk
        for index in sorted(open_choices):  # a stream that ended without saying why
            for chunk in self._close(index, choices[index], None):
                yield chunk
        if include_usage:
            yield _sse(self._chunk([], UsageInfo.of(self.prompt_tokens, tokens)))
        yield _sse("[DONE]")


@dataclass(frozen=True)
class Echo:
    """What ``echo`` puts before a choice's text: its prompt, the text of the prompt's first
    token (the one token whose logprob is null), and how many alternatives its tokens show
    (the request's ``logprobs``, whatever ``prompt_logprobs`` asked of the engine)."""

    text: str
    first_token: str
    alternatives: int = 0


class CompletionReply:
    """Text completion objects and chunks for one request (n choices per prompt); ``echoes``,
    one per choice, put its prompt first."""

    def __init__(self, model: str, prompt_tokens: int, echoes: list[Echo] | None = None):
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.echoes = echoes

    def _choice(
        self, index: int, piece: GenResult, start: int, first: bool, finish: str | None
    ) -> CompletionChoice:
        """A choice, or a piece of one whose text begins ``start`` characters into it; the
        first piece carries the echoed prompt, and its tokens' logprobs, before its own."""
        echo = self.echoes[index] if self.echoes and first else None
        prompt_logprobs = prompt_logprobs_of(piece.prompt_logprobs)
        if echo is None:
            return CompletionChoice(
                index=index,
                text=piece.text,
                logprobs=CompletionLogprobs.of(piece.logprobs, start),
                finish_reason=finish,
                prompt_logprobs=prompt_logprobs,
            )
        tokens = None
        if piece.logprobs is not None:
            prompt = [
                replace(t, top=t.top[: echo.alternatives]) for t in piece.prompt_logprobs or []
            ]
            tokens = [*prompt, *piece.logprobs]
        return CompletionChoice(
            index=index,
            text=echo.text + piece.text,
            logprobs=CompletionLogprobs.of(tokens, start, echo.first_token),
            finish_reason=finish,
            prompt_logprobs=prompt_logprobs,
        )

    def _response(
        self, choices: list[CompletionChoice], usage: UsageInfo | None = None
    ) -> CompletionResponse:
        return CompletionResponse(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def whole(self, results: list[GenResult]) -> CompletionResponse:
        choices = [
            self._choice(n, r, 0, True, _finish_reason(r.finish_reason))
            for n, r in enumerate(results)
        ]
        completion_tokens = sum(r.output_tokens for r in results)
        return self._response(choices, UsageInfo.of(self.prompt_tokens, completion_tokens))

    async def events(
        self,
        streams: list[AsyncIterator[GenResult]],
        include_usage: bool,
        abandoned: asyncio.Future[Unfinished],
    ) -> AsyncIterator[bytes]:
        tokens = 0
        # Where each choice's next token starts: the lengths of its tokens' texts so far, as
        # the whole reply counts them (a piece's text can be shorter: it holds back the bytes
        # of an unfinished character, which its token's text shows as U+FFFD).
        offsets = [0] * len(streams)
        started: set[int] = set()
        async for index, piece in _interleave(streams, abandoned):
            tokens += piece.output_tokens
            finish = _finish_reason(piece.finish_reason) if piece.finish_reason else None
            first = index not in started
            started.add(index)
            choice = self._choice(index, piece, offsets[index], first, finish)
            if choice.logprobs is not None and choice.logprobs.tokens:
                offsets[index] = choice.logprobs.text_offset[-1] + len(choice.logprobs.tokens[-1])
            yield _sse(self._response([choice]))
        if include_usage:
            yield _sse(self._response([], UsageInfo.of(self.prompt_tokens, tokens)))
        yield _sse("[DONE]")
