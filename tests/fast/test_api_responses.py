"""/v1/responses on the fake engine through the official OpenAI SDK: the response object,
its stream of typed events, slow mode's reasoning item, incomplete on length, the chat it is
served as, and the fields it refuses by name."""

import openai
import orjson
import pytest

from tests.constants import API_KEYS
from tests.fast.test_api_openai import sdk_on

pytestmark = pytest.mark.anyio

QUESTION = "什么是warp？"
KEY = {"Authorization": f"Bearer {API_KEYS[0]}"}


def sse_events(body: str) -> list[tuple[str, dict]]:
    """(the ``event:`` line, the parsed ``data:``) of each server-sent event."""
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], orjson.loads(lines["data"])))
    return events


def prompt_of(api) -> str:
    return api.app.state.openai_serving.prompts.tokenizer.decode(api.engine.calls[-1][0])


async def test_a_response_in_the_sdks_shape(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("答案是32。")
        reply = await sdk.responses.create(
            model=(await sdk.models.list()).data[0].id,
            input=QUESTION,
            instructions="简短回答。",
            max_output_tokens=64,
            temperature=0.5,
            metadata={"k": "v"},
            user="someone",
            store=False,
        )
    assert reply.id.startswith("resp_") and reply.object == "response"
    assert reply.status == "completed" and reply.incomplete_details is None
    assert reply.output_text == "答案是32。"
    [message] = reply.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    usage = reply.usage
    assert usage.input_tokens == len(api.engine.calls[0][0]) and usage.output_tokens == 6
    assert usage.total_tokens == usage.input_tokens + 6
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.input_tokens_details.cached_tokens == 0
    assert (reply.instructions, reply.max_output_tokens) == ("简短回答。", 64)
    assert (reply.metadata, reply.user, reply.temperature) == ({"k": "v"}, "someone", 0.5)
    assert (reply.tool_choice, reply.tools, reply.text.format.type) == ("auto", [], "text")
    params = api.engine.calls[0][1]
    assert (params.max_tokens, params.temperature) == (64, 0.5)
    # The instructions are the system message, before the question.
    prompt = prompt_of(api)
    assert prompt.index("简短回答。") < prompt.index(QUESTION)


async def test_the_prompt_is_the_chats_for_the_same_messages(start_api):
    history = [
        {"role": "developer", "content": "简短回答。"},
        {"role": "user", "content": [{"type": "input_text", "text": "什么是warp？"}]},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "32个线程。", "annotations": []}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},  # passed back: left out
        {"role": "user", "content": "那线程块呢？"},
    ]
    as_chat = [
        {"role": "system", "content": "简短回答。"},
        {"role": "user", "content": "什么是warp？"},
        {"role": "assistant", "content": "32个线程。"},
        {"role": "user", "content": "那线程块呢？"},
    ]
    async with start_api() as api:
        reply = await api.http.post("/v1/responses", json={"input": history, "seed": 3})
        assert reply.status_code == 200, reply.text
        await api.http.post("/v1/chat/completions", json={"messages": as_chat, "seed": 3})
        (responses_ids, responses_params), (chat_ids, chat_params) = api.engine.calls
    assert responses_ids == chat_ids and responses_params == chat_params


async def test_slow_mode_puts_the_reasoning_item_first(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("<think>先想</think>\n\n答案是32。", "答案是32。")
        slow = await sdk.responses.create(input=QUESTION, extra_body={"mode": "slow"})
        fast = await sdk.responses.create(input=QUESTION)
    reasoning, _ = slow.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content[0].text == "先想" and reasoning.summary == []
    assert slow.output_text == "答案是32。"
    assert 0 < slow.usage.output_tokens_details.reasoning_tokens <= slow.usage.output_tokens
    assert [item.type for item in fast.output] == ["message"]


async def test_the_budget_ending_the_answer_makes_it_incomplete(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("一二三四五六七八")
        reply = await sdk.responses.create(input=QUESTION, max_output_tokens=3)
    assert reply.status == "incomplete"
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.output[0].status == "incomplete" and reply.output_text == "一二三"


EXPECTED_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.mark.parametrize(
    ("reply", "budget", "ending"),
    [("流式回答。", None, "response.completed"), ("一二三四五六七八", 5, "response.incomplete")],
)
async def test_a_stream_is_the_sdks_event_sequence(start_api, reply, budget, ending):
    async with start_api() as api:
        api.engine.queue(reply)
        body = {"input": QUESTION, "stream": True, "max_output_tokens": budget}
        streamed = await api.http.post("/v1/responses", json=body)
    events = sse_events(streamed.text)
    assert [name for name, _ in events] == [*EXPECTED_EVENTS, ending]
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = "".join(data["delta"] for name, data in events if name.endswith(".delta"))
    assert deltas == reply[:budget]
    final = events[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == deltas
    assert final["usage"]["output_tokens"] == len(deltas)
    assert events[0][1]["response"]["status"] == "in_progress"


async def test_the_sdks_stream_helper_assembles_the_response(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("<think>先想一想</think>答案是32。", "<think>先想一想</think>答案是32。")
        slow = {"model": (await sdk.models.list()).data[0].id, "extra_body": {"mode": "slow"}}
        async with sdk.responses.stream(input=QUESTION, **slow) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            streamed = await stream.get_final_response()
        whole = await sdk.responses.create(input=QUESTION, **slow)
    assert "".join(deltas) == streamed.output_text == whole.output_text == "答案是32。"
    assert [item.type for item in streamed.output] == ["reasoning", "message"]
    assert streamed.output[0].content[0].text == whole.output[0].content[0].text == "先想一想"
    assert streamed.usage == whole.usage


async def test_slow_mode_streams_the_reasoning_item_then_the_message(start_api):
    async with start_api() as api:
        api.engine.queue("<think>先想</think>答案")
        body = {"input": QUESTION, "stream": True, "mode": "slow"}
        events = sse_events((await api.http.post("/v1/responses", json=body)).text)
    items = [
        (name, data["output_index"], data["item"]["type"])
        for name, data in events
        if name.startswith("response.output_item.")
    ]
    assert items == [
        ("response.output_item.added", 0, "reasoning"),
        ("response.output_item.done", 0, "reasoning"),
        ("response.output_item.added", 1, "message"),
        ("response.output_item.done", 1, "message"),
    ]
    reasoning = "".join(d["delta"] for n, d in events if n == "response.reasoning_text.delta")
    assert reasoning == "先想"


async def test_a_stream_that_fails_midway_ends_with_an_error_event(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("很长的一段回答。")
        api.engine.failure, api.engine.fail_after_pieces = RuntimeError("device lost"), 1
        body = {"input": QUESTION, "stream": True}
        reply = await api.http.post("/v1/responses", json=body, headers=KEY)
        events = sse_events(reply.text)
        name, error = events[-1]
        assert name == "error" and error["type"] == "error"
        assert "device lost" in error["message"] and error["code"] == "internal_error"
        assert error["sequence_number"] == len(events) - 1
        assert "response.output_text.delta" in [n for n, _ in events]
        api.engine.queue("很长的一段回答。")
        with pytest.raises(openai.APIError, match="device lost"):
            async for _ in await sdk.responses.create(input=QUESTION, stream=True):
                pass


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "function", "name": "f"}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"truncation": "auto"}, "truncation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"max_tokens": 5}, "max_tokens"),
        # The fake backend, as the transformers fallback, cannot constrain an answer.
        ({"text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"text": {"format": {"type": "json_schema", "name": "a", "schema": {}}}}, "text.format"),
        ({"text": {"format": {"type": "regex"}}}, "text.format"),
        ({"text": {"verbosity": "high"}}, "text.verbosity"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),
        ({"input": []}, "input"),
        ({"max_output_tokens": 100000}, "max_output_tokens"),
        ({"input": "很长的问题 " * 3000}, "input"),
        ({"model": "other"}, "model"),
        ({"temperature": 2.5}, "temperature"),
    ],
)
async def test_what_the_server_cannot_do_is_refused_by_name(start_api, fields, param):
    async with start_api() as api:
        reply = await api.http.post("/v1/responses", json={"input": QUESTION, **fields})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["param"].startswith(param) and error["type"] == "invalid_request_error"
        assert api.engine.calls == []


async def test_fields_that_ask_for_nothing_are_accepted(start_api):
    async with start_api() as api:
        body = {
            "input": QUESTION,
            "store": False,
            "tools": [],
            "tool_choice": "none",
            "include": [],
            "reasoning": {"effort": None},
            "truncation": "disabled",
            "background": False,
            "parallel_tool_calls": False,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "service_tier": "auto",  # not defined here: ignored, as on chat
        }
        reply = await api.http.post("/v1/responses", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["parallel_tool_calls"] is False


async def test_the_key_is_required(start_api):
    async with start_api(api_key=list(API_KEYS)) as api:
        denied = await api.http.post("/v1/responses", json={"input": QUESTION})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"


async def test_a_json_text_format_constrains_the_engine_as_the_chat_does(start_api):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    async with start_api() as api:
        api.engine.info.constrains_output = True
        json_format = {"type": "json_schema", "name": "a", "schema": schema, "strict": True}
        reply = await api.http.post(
            "/v1/responses", json={"input": QUESTION, "text": {"format": json_format}}
        )
        assert reply.status_code == 200, reply.text
        chat_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
        messages = [{"role": "user", "content": QUESTION}]
        chat = {"messages": messages, "response_format": chat_format}
        assert (await api.http.post("/v1/chat/completions", json=chat)).status_code == 200
        first, second = (params.constraint for _, params in api.engine.calls)
        assert first == second and first.json_schema is not None


async def test_a_tool_choice_that_asks_for_nothing_is_echoed_as_openai_does(start_api):
    async with start_api() as api:
        for asked, echoed in [({"type": None}, "auto"), ("none", "none"), (None, "auto")]:
            reply = await api.http.post(
                "/v1/responses", json={"input": QUESTION, "tool_choice": asked}
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["tool_choice"] == echoed
