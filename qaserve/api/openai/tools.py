"""Tool calls on /v1 chat: the tools and tool_choice a request gives, the JSON schema that
forces a call (``required``, a named function), and the calls of an answer in OpenAI's shape.

The model's own chat template renders the tools and the calls in the history; its answer's
``<tool_call>`` blocks are read by qaserve.core.tool_calls.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from qaserve.core.tool_calls import Call, ToolCallSplitter, forced_calls, tagged_calls
from qaserve.engine import OutputConstraint

FunctionName = Annotated[StrictStr, Field(min_length=1)]


class FunctionDefinition(BaseModel):
    # A field this server does not know still reaches the template, as the client sent it.
    model_config = ConfigDict(extra="allow")

    name: FunctionName
    description: StrictStr | None = None
    parameters: dict | None = None  # a JSON schema; none: the function takes no arguments
    strict: bool | None = None  # forced calls follow the schema either way


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: FunctionName


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(BaseModel):
    name: StrictStr
    arguments: StrictStr  # JSON text


class ToolCall(BaseModel):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall

    @classmethod
    def of(cls, call: Call) -> ToolCall:
        function = FunctionCall(name=call.name, arguments=call.arguments)
        return cls(id=f"call_{uuid.uuid4().hex[:24]}", function=function)


class DeltaFunctionCall(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """One call in a stream's delta: OpenAI sends its id, type and name once, with the
    arguments (here whole: a call is only known once it parses)."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunctionCall

    @classmethod
    def of(cls, index: int, call: ToolCall) -> DeltaToolCall:
        function = DeltaFunctionCall(name=call.function.name, arguments=call.function.arguments)
        return cls(index=index, id=call.id, type="function", function=function)


def template_tools(tools: list[ToolDefinition] | None) -> list[dict] | None:
    """Tools as the chat template renders them: as the client sent them, no field added."""
    return [tool.model_dump(exclude_unset=True) for tool in tools or []] or None


def _arguments_schema(function: FunctionDefinition) -> dict:
    return function.parameters or {"type": "object", "properties": {}}


class ToolUse:
    """How one chat request may call its tools: ``mode`` none, auto, required or named."""

    def __init__(
        self,
        tools: list[ToolDefinition] | None,
        choice: ToolChoice | None,
        parallel: bool | None,
    ):
        self.tools = tools or []
        if isinstance(choice, NamedToolChoice):
            self.mode, self.named = "named", choice.function.name
        else:
            self.mode, self.named = choice or ("auto" if self.tools else "none"), None
        # Only an explicit false asks for one call at most.
        self.single = parallel is False

    def template_tools(self) -> list[dict] | None:
        """The tools as the chat template takes them: as the client sent them."""
        return template_tools(self.tools)

    def constraint(self) -> OutputConstraint | None:
        """The JSON schema a forced call must match: the named function's arguments, or a
        list of {"name", "parameters"} objects, one per call (vLLM's shape for required)."""
        if self.mode == "named":
            function = next(t.function for t in self.tools if t.function.name == self.named)
            return OutputConstraint(json_schema=json.dumps(_arguments_schema(function)))
        if self.mode != "required":
            return None
        one_of_the_tools = [
            {
                "properties": {
                    "name": {"type": "string", "enum": [tool.function.name]},
                    "parameters": _arguments_schema(tool.function),
                },
                "required": ["name", "parameters"],
            }
            for tool in self.tools
        ]
        schema: dict = {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "anyOf": one_of_the_tools},
        }
        if self.single:
            schema["maxItems"] = 1
        return OutputConstraint(json_schema=json.dumps(schema, ensure_ascii=False))

    def splitter(self) -> ToolCallSplitter | None:
        """What holds a streaming answer's calls back; None where nothing is a call."""
        if self.mode == "none":
            return None
        return ToolCallSplitter(hold_all=self.mode != "auto")

    def calls(self, answer: str) -> tuple[str | None, list[ToolCall]]:
        """(content, calls) of a complete answer; an answer that is no call stays content."""
        if self.mode == "none":
            return answer, []
        if self.mode == "auto":
            content, calls = tagged_calls(answer)
        else:
            forced = forced_calls(answer, self.named)
            content, calls = (None, forced) if forced else (answer, [])
        if self.single:
            calls = calls[:1]
        return content, [ToolCall.of(call) for call in calls]

    def finish_reason(self, reason: str, calls: list[ToolCall]) -> str:
        """OpenAI's "tool_calls" where the model chose to call (auto, required) and stopped by
        itself; a named call finishes with "stop", as OpenAI's does."""
        if calls and self.mode != "named" and reason == "stop":
            return "tool_calls"
        return reason
