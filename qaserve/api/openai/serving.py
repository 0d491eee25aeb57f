"""The OpenAI API's serving object: chat and text completions, and responses (served as
chats), on the shared engine.

Wire format as vLLM's server and the OpenAI SDK expect. Competition length control
does not apply here: the client sets budgets and stops. ``mode`` picks fast (thinking
off, reasoning removed) or slow (thinking on, reasoning returned as
``reasoning_content`` and ``reasoning``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import NamedTuple

from fastapi.responses import Response

from qaserve.api.admission import Unfinished
from qaserve.api.body import model_response
from qaserve.api.errors import OpenAIError
from qaserve.api.models import ModelRegistry
from qaserve.api.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    OpenAIRequest,
    TokenizeRequest,
    TokenizeResponse,
    template_messages,
)
from qaserve.api.openai.replies import ChatReply, CompletionReply, Echo, event_stream
from qaserve.api.openai.responses import ResponsesReply, ResponsesRequest
from qaserve.api.openai.tools import template_tools
from qaserve.api.serving import ServingBase
from qaserve.core.prompts import PromptBuilder
from qaserve.engine import Engine, GenParams, GenResult, RequestRefused
from qaserve.settings import ApiSettings

# OpenAI's own default when a completion request names no max_tokens.
COMPLETION_MAX_TOKENS = 16


class ChatPrompt(NamedTuple):
    """A chat's prompt as the engine takes it, and one GenParams per choice."""

    thinking: bool
    ids: list[int]
    choices: list[GenParams]


class OpenAIServing(ServingBase):
    def __init__(
        self,
        engine: Engine,
        configured: GenParams,
        api: ApiSettings,
        prompts: PromptBuilder,
        models: ModelRegistry,
    ):
        super().__init__(engine, configured, api)
        self.prompts = prompts
        self.models = models

    def _adapter_for(self, requested: str | None) -> str | None:
        try:
            return self.models.adapter_for(requested)
        except LookupError as exc:
            raise OpenAIError(400, str(exc), "model", "model_not_found") from None

    def _gen_params(
        self,
        body: OpenAIRequest,
        adapter: str | None,
        prompt_len: int,
        prompt_field: str,
        default: int | None,
        budget_field: str = "max_tokens",
        format_field: str = "response_format",
    ) -> GenParams:
        """Sampling from the request (settings fill the gaps), checked against the context;
        errors name the request's prompt and budget fields."""
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
            raise OpenAIError(400, message, budget_field, "context_length_exceeded")
        params = replace(body.to_gen_params(self.configured, max_tokens), adapter=adapter)
        if params.constraint is not None and not self.engine.info.constrains_output:
            field = _constraint_field(body, format_field)
            message = (
                f"{field}: the {self.engine.info.backend} backend cannot constrain the answer "
                "(structured outputs and forced tool calls need vLLM)"
            )
            raise OpenAIError(400, message, field)
        return params

    async def _generate(
        self,
        body: OpenAIRequest,
        prompts: list[list[int]],
        params: list[GenParams],
        format_field: str = "response_format",
    ) -> list[GenResult]:
        """The engine's answers; a request it refuses before generating (a schema or grammar
        it cannot compile) is a 400 naming the field that asked for it."""
        try:
            return await self.engine.generate_batch(prompts, params)
        except RequestRefused as exc:
            message = f"the engine refused the request: {exc}"
            field = _constraint_field(body, format_field)
            raise OpenAIError(400, message, field, "invalid_request") from None

    def _choices(self, params: GenParams, body: OpenAIRequest) -> list[GenParams]:
        """One GenParams per choice: seeded requests give choice i the seed plus i, as vLLM."""
        if params.seed is None:
            return [params] * body.n
        return [replace(params, seed=params.seed + i) for i in range(body.n)]

    def _chat_prompt(
        self,
        body: ChatCompletionRequest,
        prompt_field: str = "messages",
        budget_field: str = "max_tokens",
        format_field: str = "response_format",
    ) -> ChatPrompt:
        """A chat's prompt and choices; errors name ``prompt_field``, ``budget_field`` and
        ``format_field`` (a Responses request is served as a chat, under its own names)."""
        adapter = self._adapter_for(body.model)  # an unknown model: refused before any work
        self.check_batch(body.n, "n", f"n={body.n} choices")
        thinking = body.thinking(self.api.default_mode)
        if thinking and body.output_constraint is not None:
            message = (
                "a constrained answer (structured outputs, a forced tool call) leaves no room "
                'for reasoning: send mode "fast" or chat_template_kwargs {"enable_thinking": false}'
            )
            raise OpenAIError(400, message, "mode")
        messages = template_messages(body.messages)
        tools = body.tool_use.template_tools()
        prompt_text = self.prompts.render_chat(messages, thinking, tools=tools)
        prompt_ids = self.prompts.token_ids(prompt_text)
        params = self._gen_params(
            body, adapter, len(prompt_ids), prompt_field, None, budget_field, format_field
        )
        return ChatPrompt(thinking, prompt_ids, self._choices(params, body))

    async def chat(
        self, body: ChatCompletionRequest, abandoned: asyncio.Future[Unfinished]
    ) -> Response:
        prompt = self._chat_prompt(body)
        reply = ChatReply(self.models.base_name, prompt.thinking, len(prompt.ids), body.tool_use)
        if body.stream:
            streams = [self.engine.stream(prompt.ids, p) for p in prompt.choices]
            return event_stream(reply.events(streams, body.include_usage, abandoned))
        results = await self._generate(body, [prompt.ids] * len(prompt.choices), prompt.choices)
        return model_response(reply.whole(results))

    async def responses(
        self, body: ResponsesRequest, abandoned: asyncio.Future[Unfinished]
    ) -> Response:
        """The Responses API on the chat's path: its request served as the chat it converts to."""
        chat = body.to_chat()
        prompt = self._chat_prompt(chat, "input", "max_output_tokens", "text.format")
        [params] = prompt.choices
        reply = ResponsesReply(
            body,
            self.models.base_name,
            prompt.thinking,
            len(prompt.ids),
            params,
            self.prompts.token_ids,
        )
        if body.stream:
            events = reply.events(self.engine.stream(prompt.ids, params), abandoned)
            return event_stream(events, reply.failure_events)
        [result] = await self._generate(chat, [prompt.ids], [params], "text.format")
        return model_response(reply.whole(result))

    async def completions(
        self, body: CompletionRequest, abandoned: asyncio.Future[Unfinished]
    ) -> Response:
        adapter = self._adapter_for(body.model)
        prompts = body.prompts()
        what = f"{len(prompts)} prompts times n={body.n} choices"
        self.check_batch(len(prompts) * body.n, "n", what)
        try:
            ids = self.prompts.completion_ids(prompts)
        except ValueError as exc:
            raise OpenAIError(400, str(exc), "prompt") from None
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
        echoes = None
        if body.echo:
            texts = [p if isinstance(p, str) else self.prompts.decode(p) for p in prompts]
            echoes = [
                Echo(text, self.prompts.decode(prompt_ids[:1]), body.logprobs or 0)
                for text, prompt_ids in zip(texts, ids, strict=True)
                for _ in range(body.n)
            ]
        reply = CompletionReply(self.models.base_name, sum(map(len, ids)), echoes)
        if body.stream:
            streams = list(map(self.engine.stream, choice_ids, choice_params))
            return event_stream(reply.events(streams, body.include_usage, abandoned))
        results = await self._generate(body, choice_ids, choice_params)
        return model_response(reply.whole(results))

    def tokenize(self, body: TokenizeRequest) -> TokenizeResponse:
        """Token ids as this server's completions and chats make them (vLLM's /tokenize)."""
        self._adapter_for(body.model)
        if body.messages is None:
            ids = self.prompts.encode(body.prompt, body.add_special_tokens is not False)
        else:
            text = self.prompts.render_chat(
                template_messages(body.messages),
                body.thinking(self.api.default_mode),
                body.add_generation_prompt,
                body.continue_final_message,
                template_tools(body.tools),
            )
            ids = self.prompts.encode(text, bool(body.add_special_tokens))
        return TokenizeResponse(
            count=len(ids),
            max_model_len=self.prompts.context_len,
            tokens=ids,
            token_strs=self.prompts.token_strs(ids) if body.return_token_strs else None,
        )

    def detokenize(self, body: DetokenizeRequest) -> DetokenizeResponse:
        self._adapter_for(body.model)
        try:
            return DetokenizeResponse(prompt=self.prompts.decode(body.tokens))
        except ValueError as exc:
            raise OpenAIError(400, str(exc), "tokens") from None


def _constraint_field(body: OpenAIRequest, format_field: str) -> str:
    """The field of ``body`` that constrains its answer (a forced call: tool_choice), under
    the name its API gives it (``format_field`` for response_format)."""
    field = (body.constraint_fields() or ["tool_choice"])[0]
    return format_field if field == "response_format" else field
