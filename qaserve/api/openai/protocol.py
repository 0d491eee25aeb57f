"""OpenAI's request and response bodies under /v1, as vLLM's server and the OpenAI SDK
speak them (the error body is in qaserve/api/errors.py, /v1/models' in qaserve/api/models.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qaserve.api.openai.structured import StructuredRequest, constraint_fields
from qaserve.api.openai.tools import DeltaToolCall, ToolCall, ToolChoice, ToolDefinition, ToolUse
from qaserve.api.sampling import SamplingRequest
from qaserve.engine import GenParams, OutputConstraint, TokenLogprob
from qaserve.settings.fields import MaxTokens, Priority

# Alternatives per token: vLLM's engine default max_logprobs (OpenAI allows 20 on chat, 5 on
# completions).
LogprobCount = Annotated[int, Field(ge=0, le=20)]
# Choices per prompt, as OpenAI allows.
ChoiceCount = Annotated[int, Field(ge=1, le=128)]

# ---- requests -----------------------------------------------------------------


class StreamOptions(BaseModel):
    include_usage: bool = False


def _refuse_modalities(value: object) -> None:
    if value not in (None, [], ["text"]):
        raise ValueError("only text output is supported by this server")


def _refuse_best_of(value: object) -> None:
    if value not in (None, 1):
        raise ValueError("only best_of=1 is supported")


def _refuse(value: object) -> None:
    # Falsy values (null, false, 0, []) ask for nothing: clients send them by default.
    if value:
        raise ValueError("not supported by this server")


# An OpenAI field this server cannot honour: accepted when it asks for nothing, else a 400
# that names it, never silently ignored.
Unsupported = Annotated[Any, AfterValidator(_refuse)]


class OpenAIRequest(SamplingRequest, StructuredRequest):
    model: StrictStr | None = None
    n: ChoiceCount = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: Unsupported = None
    # vLLM's field: the engine's order under SCHEDULING_POLICY=priority, lower first
    # (/predict items go as PREDICT_PRIORITY, 10 by default: after these).
    priority: Priority = 0

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def logprob_count(self) -> int | None:
        """Alternatives wanted per generated token; None: no logprobs at all."""
        return None

    @cached_property  # read by the thinking check and by to_gen_params: built once
    def output_constraint(self) -> OutputConstraint | None:
        """What the answer must match, from whichever field asks for it."""
        return self.requested_constraint()

    def to_gen_params(self, configured: GenParams, max_tokens: int) -> GenParams:
        chosen = super().to_gen_params(configured, max_tokens)
        return replace(
            chosen,
            logprobs=self.logprob_count(),
            priority=self.priority,
            constraint=self.output_constraint,
        )


class TextPart(BaseModel):
    type: Literal["text"]  # image, audio and file parts: this server serves text only
    text: StrictStr


def _arguments_object(call: ToolCall) -> dict:
    """A call's arguments as the chat template writes them back (an object, as vLLM hands
    them to templates)."""
    try:
        arguments = json.loads(call.function.arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise ValueError(f"tool call {call.id}: function.arguments must be a JSON object")
    return arguments


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    # None only on an assistant message that calls tools.
    content: StrictStr | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's calls, answered by tool messages
    tool_call_id: StrictStr | None = None  # the call a tool message answers
    name: StrictStr | None = None

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries tool_calls")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content")
        for call in self.tool_calls or []:
            _arguments_object(call)
        return self

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text for part in self.content)

    def for_template(self) -> dict:
        rendered: dict = {"role": self.role, "content": self.text()}
        if self.tool_calls:
            rendered["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": _arguments_object(call)},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            rendered["tool_call_id"] = self.tool_call_id
        if self.name is not None:  # the template's to use (Qwen's ignore it)
            rendered["name"] = self.name
        return rendered


def template_messages(messages: list[ChatMessage]) -> list[dict]:
    """The messages as the chat template takes them."""
    return [m.for_template() for m in messages]


class ThinkingChoice(BaseModel):
    """Thinking on or off for a chat prompt: ``mode``, else the template's ``enable_thinking``
    in ``chat_template_kwargs`` (as vLLM's server takes it), else the server's DEFAULT_MODE."""

    mode: Literal["fast", "slow"] | None = None
    chat_template_kwargs: dict | None = None

    def thinking(self, default_mode: str) -> bool:
        if self.mode is not None:
            return self.mode == "slow"
        enable = (self.chat_template_kwargs or {}).get("enable_thinking")
        if enable is not None:
            return bool(enable)
        return default_mode == "slow"


class ChatCompletionRequest(OpenAIRequest, ThinkingChoice):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: LogprobCount | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: Unsupported = None
    function_call: Unsupported = None
    prompt_logprobs: Unsupported = None  # vLLM's; on completions (with echo, or by this name)
    audio: Unsupported = None
    modalities: Annotated[Any, AfterValidator(_refuse_modalities)] = None
    prediction: Unsupported = None
    web_search_options: Unsupported = None

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_fits(cls, choice: ToolChoice | None, info: ValidationInfo) -> ToolChoice:
        if choice in (None, "none"):
            return choice
        names = [tool.function.name for tool in info.data.get("tools") or []]
        if not names:
            raise ValueError("there are no tools to call")
        if not isinstance(choice, str) and choice.function.name not in names:
            raise ValueError(f"no tool is named {choice.function.name!r}")
        constrained = constraint_fields(info.data)
        if choice != "auto" and constrained:
            raise ValueError(f"a forced call and {constrained[0]} each constrain the answer")
        return choice

    @cached_property  # read for the prompt, the constraint and the reply: built once
    def tool_use(self) -> ToolUse:
        return ToolUse(self.tools, self.tool_choice, self.parallel_tool_calls)

    @cached_property
    def output_constraint(self) -> OutputConstraint | None:
        return self.tool_use.constraint() or self.requested_constraint()

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def item_count(self) -> int:
        return self.n

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


TokenIds = Annotated[list[StrictInt], Field(min_length=1)]
# A completion's prompts as OpenAI takes them: text, texts, token ids, lists of token ids.
PromptInput = (
    StrictStr
    | Annotated[list[StrictStr], Field(min_length=1)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1)]
)


class CompletionRequest(OpenAIRequest):
    prompt: PromptInput
    logprobs: LogprobCount | None = None
    # The prompt before each choice's text; with logprobs, the prompt tokens' logprobs first
    # (the first one's null: nothing predicts it), as lm-evaluation-harness reads them.
    echo: bool = False
    suffix: Unsupported = None
    # vLLM's own field: the prompt tokens' logprobs with this many alternatives, in vLLM's
    # shape beside the choice (echo with logprobs asks for them too, with logprobs' count).
    prompt_logprobs: LogprobCount | None = None
    best_of: Annotated[Any, AfterValidator(_refuse_best_of)] = None

    def logprob_count(self) -> int | None:
        return self.logprobs

    def to_gen_params(self, configured: GenParams, max_tokens: int) -> GenParams:
        chosen = super().to_gen_params(configured, max_tokens)
        asked = self.prompt_logprobs
        if asked is None and self.echo:
            asked = self.logprobs
        return replace(chosen, prompt_logprobs=asked)

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: its text, or its token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if isinstance(self.prompt[0], int):
            return [self.prompt]
        return self.prompt

    def item_count(self) -> int:
        return len(self.prompts()) * self.n


# ---- /tokenize and /detokenize (vLLM's routes and shapes) -------------------------

# The fields that shape a chat prompt: with ``prompt`` they would ask for nothing.
CHAT_ONLY_FIELDS = {
    "tools",
    "add_generation_prompt",
    "continue_final_message",
    "mode",
    "chat_template_kwargs",
}


class TokenizeRequest(ThinkingChoice):
    """vLLM's two shapes in one body: ``prompt`` (its text as a completion tokenizes it) or
    ``messages`` (rendered by the chat template as a chat completion renders them)."""

    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    tools: list[ToolDefinition] | None = None  # rendered into the messages' prompt
    # vLLM's defaults: true for a prompt, false for messages (the template writes them).
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    return_token_strs: bool | None = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give one of prompt and messages")
        given = sorted(self.model_fields_set & CHAT_ONLY_FIELDS)
        if self.prompt is not None and given:
            raise ValueError(f"{', '.join(given)}: for messages only, not for a prompt")
        if self.add_generation_prompt and self.continue_final_message:
            raise ValueError(
                "continue_final_message continues the last message: "
                "set add_generation_prompt to false with it"
            )
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(BaseModel):
    model: StrictStr | None = None
    tokens: list[Annotated[int, Field(ge=0)]]


class DetokenizeResponse(BaseModel):
    prompt: str


# ---- responses ----------------------------------------------------------------


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> UsageInfo:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


FinishReason = Literal["stop", "length"]
ChatFinishReason = Literal["stop", "length", "tool_calls"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None  # None: the answer is tool calls
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # vLLM's Qwen3 parser says reasoning_content; newer vLLM releases say reasoning.
    reasoning_content: str | None = None
    reasoning: str | None = None


# JSON has no -inf: a token the model rules out is reported at this floor, as vLLM does.
LOGPROB_FLOOR = -9999.0


def _finite(logprob: float) -> float:
    return max(logprob, LOGPROB_FLOOR)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]

    @classmethod
    def of(cls, token: str, logprob: float, **extra):
        return cls(token=token, logprob=_finite(logprob), bytes=list(token.encode()), **extra)


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]

    @classmethod
    def of(cls, tokens: list[TokenLogprob] | None) -> ChatLogprobs | None:
        if tokens is None:
            return None
        content = [
            ChatTokenLogprob.of(
                t.token,
                t.logprob,
                top_logprobs=[TopLogprob.of(*alternative) for alternative in t.top],
            )
            for t in tokens
        ]
        return cls(content=content)


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: ChatFinishReason


class ReplyEnvelope(BaseModel):
    """What every completion object and chunk of one reply carries."""

    id: str
    created: int
    model: str
    usage: UsageInfo | None = None  # streams: only on the last chunk, when asked for


class ChatCompletionResponse(ReplyEnvelope):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: UsageInfo


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: ChatFinishReason | None = None


class ChatCompletionChunk(ReplyEnvelope):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


def _alternatives(token: TokenLogprob) -> dict[str, float]:
    """A token's alternatives in the legacy shape: the likeliest, and always the token itself
    (OpenAI's rule, as vLLM gives it: up to logprobs + 1 entries)."""
    return {token.token: _finite(token.logprob)} | {t: _finite(lp) for t, lp in token.top}


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one entry per token; with ``echo`` the
    prompt's tokens come first, the very first with null logprobs (nothing predicts it)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]  # where each token starts in the choice's text

    @classmethod
    def of(
        cls, tokens: list[TokenLogprob] | None, start: int = 0, first_token: str | None = None
    ) -> CompletionLogprobs | None:
        """The logprobs of tokens whose text begins ``start`` characters into the choice,
        after ``first_token`` (an echoed prompt's first token) where there is one."""
        if tokens is None:
            return None
        unpredicted = [] if first_token is None else [first_token]
        texts = [*unpredicted, *(t.token for t in tokens)]
        offsets = []
        for text in texts:
            offsets.append(start)
            start += len(text)
        return cls(
            tokens=texts,
            token_logprobs=[None] * len(unpredicted) + [_finite(t.logprob) for t in tokens],
            top_logprobs=[None] * len(unpredicted) + [_alternatives(t) for t in tokens],
            text_offset=offsets,
        )


class PromptTokenLogprob(BaseModel):
    logprob: float
    rank: int  # 1: the likeliest
    decoded_token: str


# vLLM's prompt_logprobs: per prompt token (the first: null, nothing predicts it) its own and
# its likeliest alternatives' logprobs, keyed by token id.
PromptLogprobs = list[dict[str, PromptTokenLogprob] | None]


def prompt_logprobs_of(tokens: list[TokenLogprob] | None) -> PromptLogprobs | None:
    if tokens is None:
        return None
    positions: PromptLogprobs = [None]
    for t in tokens:
        position = {
            str(token_id): PromptTokenLogprob(
                logprob=_finite(logprob), rank=rank, decoded_token=token
            )
            for rank, (token_id, (token, logprob)) in enumerate(
                zip(t.top_ids, t.top, strict=True), start=1
            )
        }
        picked = PromptTokenLogprob(logprob=_finite(t.logprob), rank=t.rank, decoded_token=t.token)
        positions.append({str(t.token_id): picked, **position})
    return positions


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None
    prompt_logprobs: PromptLogprobs | None = None  # on a stream's first piece


class CompletionResponse(ReplyEnvelope):
    """A whole completion, or (streaming) one chunk of it."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
