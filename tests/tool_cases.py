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
