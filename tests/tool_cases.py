"""Tools, a call regex and a schema shared by the live-server tests of tool calls and
structured outputs, and by the differential test."""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["paris", "tokyo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["utc", "cet"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
# A call as Qwen writes one, forced on the random model by a regex: what `auto` must find.
CALL_REGEX = (
    r'<tool_call>\n\{"name": "get_weather", '
    r'"arguments": \{"city": "(paris|tokyo)"\}\}\n</tool_call>'
)
# A verdict object, as a JSON schema.
VERDICT = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "sure": {"type": "boolean"},
    },
    "required": ["answer", "sure"],
    "additionalProperties": False,
}


def tool_history(question: list[dict], city: str, result: str) -> list[dict]:
    """``question``, then an assistant turn that called get_weather for ``city`` (arguments
    as JSON text, as OpenAI sends them back) and the tool message with its ``result``."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'},
    }
    return [
        *question,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]
