"""Find the tool calls in Qwen output, whole or as it streams.

Qwen's chat templates tell the model to call a tool as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one block per call, after any
text it writes first. An answer is a call only if every block parses: otherwise it stays
plain text (a half-written call is text, not an error). A call forced by a JSON schema
(``tool_choice`` required or named) is read by ``forced_calls`` instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from qaserve.core.reasoning import held_prefix

OPEN, CLOSE = "<tool_call>", "</tool_call>"
# A block runs to its closing tag, or to the end of the text (a model may stop before it).
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str  # JSON text, as OpenAI's function.arguments


def _call(data: object) -> Call | None:
    """A call from a decoded block; None where it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as JSON text
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return Call(data["name"], json.dumps(arguments, ensure_ascii=False))


def tagged_calls(text: str) -> tuple[str | None, list[Call]]:
    """(the text before the first call or None, the calls) of a complete answer; where a
    block does not parse, (the whole text, no calls)."""
    start = text.find(OPEN)
    if start < 0:
        return text, []
    calls = []
    for block in _BLOCK.finditer(text, start):
        try:
            call = _call(json.loads(block.group(1)))
        except ValueError:
            call = None
        if call is None:
            return text, []
        calls.append(call)
    return text[:start] or None, calls


def forced_calls(text: str, named: str | None) -> list[Call] | None:
    """The calls of an answer constrained to call: to ``named``'s arguments (the whole answer
    is them), or, with no name, to a JSON list of {"name", "parameters"}. None where the
    answer is not that (cut short by max_tokens)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if named is not None:  # the answer is the arguments, given as written
        return [Call(named, text)] if isinstance(data, dict) else None
    if not isinstance(data, list) or not data:
        return None
    calls = [_call(item) for item in data]
    return None if None in calls else calls


class ToolCallSplitter:
    """The text of a streaming answer that cannot be part of a call, as it comes: before the
    first ``<tool_call>``, or nothing at all where the whole answer is a forced call
    (``hold_all``). The rest is held for ``finish`` (a call is only known once it parses)."""

    def __init__(self, hold_all: bool) -> None:
        self._buffer = ""
        self._holding = hold_all

    def feed(self, text: str) -> str:
        self._buffer += text
        if self._holding:
            return ""
        start = self._buffer.find(OPEN)
        if start >= 0:
            self._holding = True
        else:
            start = len(self._buffer) - held_prefix(self._buffer, OPEN)
        released, self._buffer = self._buffer[:start], self._buffer[start:]
        return released

    def finish(self) -> str:
        """The text held back, once the answer is complete."""
        held, self._buffer = self._buffer, ""
        return held
