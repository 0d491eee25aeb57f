"""POST /v1/responses, OpenAI's Responses API with text in and out: the request as the SDK
sends it, the chat it is served as (one prompt-building and sampling path for both), and the
response object, whole or as the SDK's typed stream events.

Stateless: nothing is stored, so ``previous_response_id``, ``store: true`` and
``conversation`` are refused by name; a multi-turn client sends the whole conversation as
``input`` (an earlier response's output items included).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, ClassVar, Literal

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictStr,
    Tag,
    ValidationError,
    field_validator,
)

from qaserve.api.admission import Unfinished
from qaserve.api.errors import OpenAIError
from qaserve.api.openai.protocol import ChatCompletionRequest, ChatMessage, ThinkingChoice
from qaserve.api.openai.replies import _interleave
from qaserve.api.sampling import SamplingRequest
from qaserve.core.reasoning import ReasoningSplitter, split_reasoning
from qaserve.engine import GenParams, GenResult
from qaserve.settings.fields import MaxTokens, Priority

# ---- request ------------------------------------------------------------------


def _asks_for_something(value: object, asks_nothing: tuple) -> bool:
    if value in asks_nothing:
        return False
    if isinstance(value, dict):  # e.g. reasoning: {"effort": null}
        return any(_asks_for_something(v, asks_nothing) for v in value.values())
    return bool(value)


def refused(why: str, *asks_nothing: object):
    """A field this server cannot honour: accepted while it asks for nothing (null, false,
    empty, ``asks_nothing``'s values, an object of such), else a 400 naming it, saying why."""

    def refuse(value: object) -> object:
        if _asks_for_something(value, asks_nothing):
            raise ValueError(why)
        return value

    return Annotated[Any, AfterValidator(refuse)]


STATELESS = (
    "this server is stateless: it stores no responses or conversations; send the whole "
    "conversation as input"
)
NO_TOOLS = "tools are not supported by this server"


class InputText(BaseModel):
    # output_text: an earlier answer passed back as input (its annotations say nothing here).
    type: Literal["input_text", "output_text"]  # images, files, audio: text only here
    text: StrictStr


class InputMessage(BaseModel):
    """A message of ``input``: the SDK's easy message (no ``type``), an input message, or an
    earlier response's output message passed back."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: StrictStr | list[InputText]

    def chat_message(self) -> ChatMessage:
        content = self.content
        text = content if isinstance(content, str) else "".join(part.text for part in content)
        # The chat template knows no developer role: OpenAI's developer messages are the
        # system messages of models without one.
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class InputReasoning(BaseModel):
    """An earlier response's reasoning item passed back: left out of the prompt, as Qwen3's
    chat template leaves out the reasoning of earlier turns."""

    type: Literal["reasoning"]


def _item_type(item: object) -> str:
    if isinstance(item, dict):
        return item.get("type", "message")
    return getattr(item, "type", "message")


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")] | Annotated[InputReasoning, Tag("reasoning")],
    Discriminator(_item_type),
]


class OutputFormat(BaseModel):
    """``text.format``: the chat's ``response_format`` in the Responses API's flat shape;
    which formats are served is the chat's to say."""

    model_config = ConfigDict(extra="allow")  # json_schema's name, schema, strict, ...

    type: StrictStr

    def response_format(self) -> dict:
        """The chat's form: a json_schema's fields go under ``json_schema``."""
        fields = self.model_dump(exclude={"type"})
        if self.type == "json_schema":
            return {"type": self.type, "json_schema": fields}
        return {"type": self.type, **fields}


class TextConfig(BaseModel):
    format: OutputFormat = OutputFormat(type="text")
    verbosity: refused("verbosity is not supported by this server", "medium") = None


def _to_text_format(error: dict) -> dict:
    """A chat validation error as this request's: only ``text.format`` can fail as a chat."""
    loc = ("text", "format") if error["loc"][0] == "response_format" else error["loc"]
    return {**error, "loc": ("body", *loc)}


class ResponsesRequest(SamplingRequest, ThinkingChoice):
    """What this server takes of OpenAI's Responses request; the sampling fields and the
    thinking choice (``mode``, ``chat_template_kwargs``) as a chat takes them."""

    model: StrictStr | None = None
    input: StrictStr | Annotated[list[InputItem], Field(min_length=1)]
    instructions: StrictStr | None = None
    max_output_tokens: MaxTokens | None = None
    max_tokens: refused("the Responses API's budget is max_output_tokens") = None
    stream: bool = False
    text: TextConfig | None = None
    priority: Priority = 0  # vLLM's field, as on chat
    # Echoed back, as OpenAI does; nothing here depends on them.
    metadata: dict[StrictStr, StrictStr] | None = None
    user: StrictStr | None = None
    parallel_tool_calls: bool = True
    # Without tools, "auto" and "none" both mean no tool calls.
    tool_choice: refused(NO_TOOLS, "auto", "none") = None
    tools: refused(NO_TOOLS) = None
    previous_response_id: refused(STATELESS) = None
    store: refused(STATELESS) = None
    conversation: refused(STATELESS) = None
    background: refused("background responses need a store: this server is stateless") = None
    include: refused("nothing beyond the response itself is given by this server") = None
    top_logprobs: refused("logprobs are not given on /v1/responses (chat gives them)") = None
    reasoning: refused(
        "reasoning effort and summaries are not supported: thinking is on or off by mode "
        "(fast or slow) or chat_template_kwargs.enable_thinking"
    ) = None
    prompt: refused("stored prompts are not supported by this server") = None
    truncation: refused("input is never cut: a too-long input is a 400", "disabled") = None
    context_management: refused("context compaction is not supported by this server") = None
    moderation: refused("moderation is not supported by this server") = None

    @field_validator("input")
    @classmethod
    def _has_a_message(cls, value: str | list) -> str | list:
        if isinstance(value, list) and not any(isinstance(i, InputMessage) for i in value):
            raise ValueError("input holds no message")
        return value

    def item_count(self) -> int:
        return 1  # one engine request: no n here

    def to_chat(self) -> ChatCompletionRequest:
        """The chat this request is served as."""
        if isinstance(self.input, str):
            messages = [ChatMessage(role="user", content=self.input)]
        else:
            messages = [i.chat_message() for i in self.input if isinstance(i, InputMessage)]
        if self.instructions is not None:
            messages.insert(0, ChatMessage(role="system", content=self.instructions))
        shared = set(SamplingRequest.model_fields) - {"max_tokens"}
        shared |= {*ThinkingChoice.model_fields, "model", "priority"}
        try:
            return ChatCompletionRequest(
                **self.model_dump(include=shared, exclude_none=True),
                messages=messages,
                max_completion_tokens=self.max_output_tokens,
                response_format=self.text and self.text.format.response_format(),
            )
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            raise RequestValidationError(list(map(_to_text_format, errors))) from None


# ---- response -----------------------------------------------------------------

Status = Literal["in_progress", "completed", "incomplete"]


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = []


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Status
    content: list[OutputText]

    # What a stream says of its text: the events' names, and what they carry besides.
    text_events: ClassVar[str] = "response.output_text"
    text_event_fields: ClassVar[dict] = {"logprobs": []}
    part: ClassVar[Callable[..., BaseModel]] = OutputText


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[Any] = []  # no summaries: the reasoning itself is the content
    status: Status
    content: list[ReasoningText]

    text_events: ClassVar[str] = "response.reasoning_text"
    text_event_fields: ClassVar[dict] = {}
    part: ClassVar[Callable[..., BaseModel]] = ReasoningText


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0  # the engine does not say: not measured


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseObject(BaseModel):
    """OpenAI's Response, with the request's settings echoed as OpenAI echoes them."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    model: str
    status: Status
    incomplete_details: IncompleteDetails | None = None
    error: None = None
    output: list[ReasoningItem | OutputMessage]
    usage: ResponseUsage | None
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str] | None
    parallel_tool_calls: bool
    temperature: float  # the sampling used: the request's, else the server's setting
    top_p: float
    tool_choice: str
    tools: list[Any] = []
    text: TextConfig
    truncation: Literal["disabled"] = "disabled"
    previous_response_id: None = None
    reasoning: None = None
    store: Literal[False] = False
    background: Literal[False] = False
    user: str | None


def _status(finish_reason: str | None) -> Status:
    return "incomplete" if finish_reason == "length" else "completed"


class ResponsesReply:
    """The response object of one request, whole or as stream events; slow mode (thinking)
    puts a reasoning item before the message."""

    def __init__(
        self,
        request: ResponsesRequest,
        model: str,
        thinking: bool,
        prompt_tokens: int,
        params: GenParams,
        tokenize: Callable[[str], list[int]],
    ):
        self.request = request
        self.id = f"resp_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.model = model
        self.thinking = thinking
        self.prompt_tokens = prompt_tokens
        self.params = params
        self.tokenize = tokenize  # counts the reasoning tokens
        self.reasoning_id = f"rs_{uuid.uuid4().hex}"
        self.message_id = f"msg_{uuid.uuid4().hex}"
        self._sequence = itertools.count()

    def _response(
        self, status: Status, output: list, usage: ResponseUsage | None
    ) -> ResponseObject:
        request = self.request
        cut = IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            incomplete_details=cut,
            output=output,
            usage=usage,
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            metadata=request.metadata,
            parallel_tool_calls=request.parallel_tool_calls,
            temperature=self.params.temperature,
            top_p=self.params.top_p,
            # Refused unless it asks for no tool: "none", else OpenAI's default.
            tool_choice="none" if request.tool_choice == "none" else "auto",
            text=request.text or TextConfig(),
            user=request.user,
        )

    def _output(self, reasoning: str, answer: str, status: Status) -> list:
        message = OutputMessage(
            id=self.message_id, status=status, content=[OutputText(text=answer)]
        )
        if not self.thinking:
            return [message]
        # The reasoning is whole whatever the message's end: as vLLM, always completed.
        item = ReasoningItem(
            id=self.reasoning_id, status="completed", content=[ReasoningText(text=reasoning)]
        )
        return [item, message]

    def _usage(self, output_tokens: int, reasoning: str) -> ResponseUsage:
        reasoning_tokens = min(len(self.tokenize(reasoning)), output_tokens) if reasoning else 0
        return ResponseUsage(
            input_tokens=self.prompt_tokens,
            output_tokens=output_tokens,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning_tokens),
            total_tokens=self.prompt_tokens + output_tokens,
        )

    def _finished(
        self, reasoning: str, answer: str, output_tokens: int, finish_reason: str | None
    ) -> ResponseObject:
        status = _status(finish_reason)
        shown = reasoning if self.thinking else ""  # fast mode drops stray reasoning
        output = self._output(shown, answer, status)
        return self._response(status, output, self._usage(output_tokens, shown))

    def whole(self, result: GenResult) -> ResponseObject:
        reasoning, answer = split_reasoning(result.text, self.thinking)
        return self._finished(reasoning, answer, result.output_tokens, result.finish_reason)

    # ---- the stream ----

    def _event(self, kind: str, **fields: Any) -> bytes:
        """One server-sent event as OpenAI sends them: ``event:`` names its type."""
        payload = {"type": kind, "sequence_number": next(self._sequence), **fields}
        data = orjson.dumps(payload, default=BaseModel.model_dump)
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), data)

    def failure_events(self, error: OpenAIError) -> list[bytes]:
        """How a failed stream ends: OpenAI's error event; its ``error`` object (as on chat)
        makes the SDK raise it."""
        info = error.info
        return [
            self._event("error", code=info.code, message=info.message, param=info.param, error=info)
        ]

    async def events(
        self, stream: AsyncIterator[GenResult], abandoned: asyncio.Future[Unfinished]
    ) -> AsyncIterator[bytes]:
        started = self._response("in_progress", [], None)
        yield self._event("response.created", response=started)
        yield self._event("response.in_progress", response=started)
        reasoning = _ItemStream(self, 0, ReasoningItem, self.reasoning_id)
        message = _ItemStream(self, int(self.thinking), OutputMessage, self.message_id)
        if self.thinking:  # the reasoning comes first: its item opens at once
            for event in reasoning.opened():
                yield event
        splitter = ReasoningSplitter(self.thinking)
        tokens, finish_reason = 0, None
        # Leaving this loop (client gone) cancels the engine stream at once.
        async for _, piece in _interleave([stream], abandoned):
            tokens += piece.output_tokens
            finish_reason = piece.finish_reason or finish_reason
            for event in self._pieces(reasoning, message, *splitter.feed(piece.text)):
                yield event
        ending = self._pieces(reasoning, message, *splitter.finish())
        if not message.open:  # no answer at all: its message still comes, empty
            ending += self._switch(reasoning, message)
        status = _status(finish_reason)
        ending += message.closed(status)
        for event in ending:
            yield event
        final = self._finished(reasoning.text, message.text, tokens, finish_reason)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        yield self._event(kind, response=final)

    def _switch(self, reasoning: _ItemStream, message: _ItemStream) -> list[bytes]:
        """The reasoning item done (in slow mode), the message item begun."""
        done = reasoning.closed("completed") if reasoning.open else []
        return [*done, *message.opened()]

    def _pieces(
        self, reasoning: _ItemStream, message: _ItemStream, thought: str, answer: str
    ) -> list[bytes]:
        events = []
        if thought and self.thinking:  # fast mode drops stray reasoning
            events.append(reasoning.delta(thought))
        if answer:
            if not message.open:
                events += self._switch(reasoning, message)
            events.append(message.delta(answer))
        return events


class _ItemStream:
    """One output item as stream events: added with its one text part, the text's deltas,
    then done (the text, the part, the item)."""

    def __init__(
        self,
        reply: ResponsesReply,
        index: int,
        kind: type[ReasoningItem] | type[OutputMessage],
        item_id: str,
    ):
        self.reply = reply
        self.kind = kind
        self.index = index
        self.item_id = item_id
        # Where its text's events point: the item, and its one part.
        self.where = {"item_id": item_id, "output_index": index, "content_index": 0}
        self.text = ""
        self.open = False

    def _item(self, status: Status, text: str | None) -> BaseModel:
        content = [] if text is None else [self.kind.part(text=text)]
        return self.kind(id=self.item_id, status=status, content=content)

    def opened(self) -> list[bytes]:
        self.open = True
        event = self.reply._event
        return [
            event(
                "response.output_item.added",
                output_index=self.index,
                item=self._item("in_progress", None),
            ),
            event("response.content_part.added", **self.where, part=self.kind.part(text="")),
        ]

    def delta(self, text: str) -> bytes:
        self.text += text
        return self.reply._event(
            f"{self.kind.text_events}.delta",
            **self.where,
            delta=text,
            **self.kind.text_event_fields,
        )

    def closed(self, status: Status) -> list[bytes]:
        self.open = False
        event = self.reply._event
        kind = self.kind
        return [
            event(
                f"{kind.text_events}.done", **self.where, text=self.text, **kind.text_event_fields
            ),
            event("response.content_part.done", **self.where, part=kind.part(text=self.text)),
            event(
                "response.output_item.done",
                output_index=self.index,
                item=self._item(status, self.text),
            ),
        ]
