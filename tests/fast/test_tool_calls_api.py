"""Tool calls and structured outputs on /v1 chat over the fake engine: what reaches the
engine (the prompt, the constraint) and how answers come back, whole and streamed in pieces
that split the tags."""

import json

import pytest

from qaserve.engine import RequestRefused
from tests.fast.test_api_openai import QUESTION, sdk_on
from tests.tool_cases import tool_history

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "巴黎"}}\n</tool_call>'


async def create(sdk, **fields):
    model = (await sdk.models.list()).data[0].id
    return await sdk.chat.completions.create(model=model, messages=QUESTION, **fields)


async def streamed(sdk, **fields):
    """(text, tool call pieces, finish reason) of a streamed chat."""
    chunks = [c async for c in await create(sdk, stream=True, **fields) if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    return text, calls, chunks[-1].choices[0].finish_reason


async def test_auto_reads_the_calls_after_the_text_whole_and_streamed(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("好的。" + CALL, "好的。" + CALL)
        whole = (await create(sdk, tools=[WEATHER])).choices[0]
        assert whole.finish_reason == "tool_calls" and whole.message.content == "好的。"
        (call,) = whole.message.tool_calls
        assert call.function.name == "get_weather" and call.id.startswith("call_")
        assert json.loads(call.function.arguments) == {"city": "巴黎"}
        text, pieces, finish = await streamed(sdk, tools=[WEATHER])  # two characters a piece
        assert (text, finish) == ("好的。", "tool_calls")
        (piece,) = pieces
        assert (piece.index, piece.type, piece.function.name) == (0, "function", "get_weather")
        assert piece.function.arguments == call.function.arguments
        # The tools reached the template: the prompt describes them.
        prompt = api.app.state.openai_serving.prompts.decode(api.engine.calls[0][0])
        assert "get_weather" in prompt
        assert api.engine.calls[0][1].constraint is None  # auto: the model decides


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>\n{not json}\n</tool_call>",  # a call that does not parse
        "a < b; <tool",  # a tag that never completes
        "<tool_call>\n" + '{"arguments": {}}' + "\n</tool_call>",  # no name
    ],
)
async def test_an_answer_that_is_no_call_stays_text(start_api, text):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue(text, text)
        whole = (await create(sdk, tools=[WEATHER])).choices[0]
        assert (whole.message.content, whole.message.tool_calls) == (text, [])
        assert whole.finish_reason == "stop"
        assert await streamed(sdk, tools=[WEATHER]) == (text, [], "stop")


async def test_parallel_calls_off_keeps_the_first(start_api):
    async with sdk_on(start_api) as (sdk, api):
        second = CALL.replace("巴黎", "东京")
        api.engine.queue(CALL + "\n" + second, CALL + "\n" + second)
        many = (await create(sdk, tools=[WEATHER])).choices[0].message.tool_calls
        one = (await create(sdk, tools=[WEATHER], parallel_tool_calls=False)).choices[0]
        assert len(many) == 2 and len(one.message.tool_calls) == 1
        assert one.message.tool_calls[0].function.arguments == many[0].function.arguments


async def test_required_and_named_constrain_the_engine_and_read_its_json(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.info.constrains_output = True
        api.engine.queue(
            '[{"name": "get_weather", "parameters": {"city": "巴黎"}}, '
            '{"name": "get_time", "parameters": {}}]',
            '{"city": "巴黎"}',
        )
        required = (await create(sdk, tools=[WEATHER, TIME], tool_choice="required")).choices[0]
        assert required.finish_reason == "tool_calls" and required.message.content is None
        names = [call.function.name for call in required.message.tool_calls]
        assert names == ["get_weather", "get_time"]
        schema = json.loads(api.engine.calls[0][1].constraint.json_schema)
        assert schema["type"] == "array" and "maxItems" not in schema
        tool_schemas = schema["items"]["anyOf"]
        assert tool_schemas[0]["properties"]["parameters"] == WEATHER["function"]["parameters"]
        assert tool_schemas[1]["properties"]["name"] == {"type": "string", "enum": ["get_time"]}
        named = {"type": "function", "function": {"name": "get_weather"}}
        reply = (await create(sdk, tools=[WEATHER, TIME], tool_choice=named)).choices[0]
        assert reply.finish_reason == "stop"  # as OpenAI finishes a named call
        (call,) = reply.message.tool_calls
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "get_weather",
            {"city": "巴黎"},
        )
        constraint = api.engine.calls[1][1].constraint
        assert json.loads(constraint.json_schema) == WEATHER["function"]["parameters"]


async def test_a_forced_call_streams_as_one_tool_call_delta(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.info.constrains_output = True
        api.engine.queue('[{"name": "get_time", "parameters": {}}]')
        text, pieces, finish = await streamed(sdk, tools=[TIME], tool_choice="required")
        assert (text, finish) == ("", "tool_calls")
        assert [(p.function.name, p.function.arguments) for p in pieces] == [("get_time", "{}")]


async def test_a_backend_that_cannot_constrain_refuses_by_name(start_api):
    async with start_api() as api:
        cases = {
            "tool_choice": {"tools": [WEATHER], "tool_choice": "required"},
            "response_format": {"response_format": {"type": "json_object"}},
            "guided_regex": {"guided_regex": "[a-z]+"},
            "structured_outputs": {"structured_outputs": {"choice": ["a", "b"]}},
        }
        for param, fields in cases.items():
            reply = await api.http.post(
                "/v1/chat/completions", json={"messages": QUESTION, **fields}
            )
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["param"] == param and "cannot constrain" in error["message"]
        assert api.engine.calls == []


async def test_every_spelling_of_a_constraint_reaches_the_engine_alike(start_api):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spellings = [
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            }
        },
        {"guided_json": schema},
        {"guided_json": json.dumps(schema)},
        {"structured_outputs": {"json": schema}},
    ]
    async with start_api() as api:
        api.engine.info.constrains_output = True
        for fields in spellings:
            for path, base in [
                ("/v1/chat/completions", {"messages": QUESTION}),
                ("/v1/completions", {"prompt": "q"}),
            ]:
                reply = await api.http.post(path, json={**base, **fields})
                assert reply.status_code == 200, reply.text
        constraints = {params.constraint for _, params in api.engine.calls}
        (constraint,) = constraints
        assert json.loads(constraint.json_schema) == schema
        await api.http.post("/v1/completions", json={"prompt": "q", "guided_choice": ["是", "否"]})
        assert api.engine.calls[-1][1].constraint.choice == ("是", "否")


async def test_a_history_with_calls_and_results_is_rendered(start_api):
    async with start_api() as api:
        history = tool_history(QUESTION, "巴黎", "晴")
        reply = await api.http.post(
            "/v1/chat/completions", json={"messages": history, "tools": [WEATHER]}
        )
        assert reply.status_code == 200, reply.text
        prompt = api.app.state.openai_serving.prompts.decode(api.engine.calls[0][0])
        assert '"city": "巴黎"' in prompt and "晴" in prompt
        history[1]["tool_calls"][0]["function"]["arguments"] = "not json"
        reply = await api.http.post("/v1/chat/completions", json={"messages": history})
        assert reply.status_code == 400
        assert reply.json()["error"]["param"].startswith("messages.1")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"guided_grammar": ""}, "guided_grammar"),
        ({"structured_outputs": {"grammar": "  "}}, "structured_outputs.grammar"),
        ({"guided_regex": "a\x00b"}, "guided_regex"),
        ({"guided_choice": ["a", ""]}, "guided_choice"),
        ({"guided_whitespace_pattern": " "}, "guided_whitespace_pattern"),
    ],
)
async def test_constraints_an_engine_could_choke_on_are_refused_by_name(start_api, fields, param):
    async with start_api() as api:
        api.engine.info.constrains_output = True
        body = {"messages": QUESTION, **fields}
        reply = await api.http.post("/v1/chat/completions", json=body)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"].startswith(param)
        assert api.engine.calls == []


async def test_a_constraint_the_engine_refuses_is_a_400_naming_the_field(start_api):
    async with start_api() as api:
        api.engine.info.constrains_output = True
        api.engine.failure = RequestRefused("cannot compile this schema")
        schema = {"name": "x", "schema": {"type": "object"}}
        cases = [
            ("/v1/chat/completions", {"messages": QUESTION, "guided_regex": "(a"}, "guided_regex"),
            (
                "/v1/completions",
                {"prompt": "q", "response_format": {"type": "json_schema", "json_schema": schema}},
                "response_format",
            ),
            (
                "/v1/responses",
                {"input": "q", "text": {"format": {"type": "json_schema", **schema}}},
                "text.format",
            ),
        ]
        for path, body, param in cases:
            reply = await api.http.post(path, json=body)
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["param"] == param and "cannot compile" in error["message"]
