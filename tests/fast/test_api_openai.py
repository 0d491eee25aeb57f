"""/v1 on the fake engine through the official OpenAI SDK: shapes, modes, keys, and
engine failures in OpenAI's own error shape (JSON 500, or an error event in a stream)."""

from contextlib import asynccontextmanager

import openai
import orjson
import pytest

from tests.constants import API_KEYS

pytestmark = pytest.mark.anyio

QUESTION = [{"role": "user", "content": "什么是warp？"}]


@asynccontextmanager
async def sdk_on(start_api, **settings):
    async with start_api(api_key=list(API_KEYS), **settings) as api:
        sdk = openai.AsyncOpenAI(
            base_url="http://qaserve/v1", api_key=API_KEYS[1], http_client=api.http, max_retries=0
        )
        yield sdk, api


def sse_data(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]


async def test_models_and_chat_in_fast_and_slow_mode(start_api, tokenizer_dir):
    async with sdk_on(start_api) as (sdk, api):
        models = (await sdk.models.list()).data
        assert [m.id for m in models] == [tokenizer_dir.name]
        api.engine.queue("<think>先想</think>\n\n答案是32。", "<think>先想</think>答案是32。")
        slow = await sdk.chat.completions.create(
            model=models[0].id, messages=QUESTION, extra_body={"mode": "slow"}
        )
        message = slow.choices[0].message
        assert (message.content, message.reasoning_content) == ("答案是32。", "先想")
        fast = await sdk.chat.completions.create(model=models[0].id, messages=QUESTION)
        assert fast.choices[0].message.reasoning_content is None
        assert fast.choices[0].finish_reason == "stop"
        assert fast.usage.total_tokens == fast.usage.prompt_tokens + fast.usage.completion_tokens


async def test_budget_comes_from_the_request_and_length_is_reported(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("一二三四五六七八")
        reply = await sdk.chat.completions.create(
            model=(await sdk.models.list()).data[0].id,
            messages=QUESTION,
            max_completion_tokens=3,
            temperature=2,
            stop="。",
        )
        params = api.engine.calls[0][1]
        assert (params.max_tokens, params.temperature, params.stop) == (3, 2.0, ("。",))
        assert reply.choices[0].finish_reason == "length"
        assert reply.choices[0].message.content == "一二三"


async def test_chat_stream_ends_with_usage_and_done(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("流式回答。")
        model = (await sdk.models.list()).data[0].id
        stream = await sdk.chat.completions.create(
            model=model, messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "流式回答。"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


async def test_completions_give_one_choice_per_prompt(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("甲", "乙")
        model = (await sdk.models.list()).data[0].id
        reply = await sdk.completions.create(model=model, prompt=["a", "b"])
        assert [(c.index, c.text) for c in reply.choices] == [(0, "甲"), (1, "乙")]
        assert [p.max_tokens for _, p in api.engine.calls] == [16, 16]  # OpenAI's default


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "other", "messages": QUESTION}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": QUESTION, "temperature": 2.5}, "temperature"),
        ({"messages": QUESTION, "max_tokens": 100000}, "max_tokens"),
        ({"messages": QUESTION, "n": 0}, "n"),
        ({"messages": QUESTION, "n": 129}, "n"),
        ({"messages": QUESTION, "top_logprobs": 2}, "top_logprobs"),  # needs logprobs: true
        ({"messages": QUESTION, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ],
)
async def test_bad_requests_are_400s_naming_the_param(start_api, body, param):
    async with start_api(api_key=list(API_KEYS)) as api:
        key = {"Authorization": f"Bearer {API_KEYS[0]}"}
        reply = await api.http.post("/v1/chat/completions", json=body, headers=key)
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_chat_logprobs_in_openais_shape_whole_and_streamed(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("答案。", "答案。")
        model = (await sdk.models.list()).data[0].id
        asked = {"model": model, "messages": QUESTION, "logprobs": True, "top_logprobs": 2}
        whole = (await sdk.chat.completions.create(**asked)).choices[0].logprobs.content
        assert api.engine.calls[0][1].logprobs == 2
        assert [t.token for t in whole] == ["答", "案", "。"]
        assert [t.logprob for t in whole] == [-1.0, -0.5, -1 / 3]
        assert whole[0].bytes == list("答".encode())
        assert [[a.token for a in t.top_logprobs] for t in whole] == [["a", "b"]] * 3
        stream = await sdk.chat.completions.create(**asked, stream=True)
        streamed = [
            t
            async for chunk in stream
            for c in chunk.choices
            if c.logprobs
            for t in c.logprobs.content
        ]
        assert streamed == whole


async def test_no_logprobs_unless_asked(start_api):
    async with sdk_on(start_api) as (sdk, api):
        model = (await sdk.models.list()).data[0].id
        reply = await sdk.chat.completions.create(model=model, messages=QUESTION, logprobs=False)
        assert reply.choices[0].logprobs is None and api.engine.calls[0][1].logprobs is None


async def test_completion_logprobs_have_tokens_offsets_and_alternatives(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("甲乙丙", "甲乙丙")
        model = (await sdk.models.list()).data[0].id
        whole = (await sdk.completions.create(model=model, prompt="a", logprobs=1)).choices[0]
        logprobs = whole.logprobs
        assert logprobs.tokens == ["甲", "乙", "丙"] and logprobs.text_offset == [0, 1, 2]
        assert logprobs.token_logprobs == [-1.0, -0.5, -1 / 3]
        # The likeliest alternative, and the token itself (OpenAI's logprobs + 1, as vLLM).
        assert logprobs.top_logprobs == [
            {"甲": -1.0, "a": -2.0},
            {"乙": -0.5, "a": -1.5},
            {"丙": -1 / 3, "a": -1 / 3 - 1},
        ]
        stream = await sdk.completions.create(model=model, prompt="a", logprobs=1, stream=True)
        offsets = [
            o async for chunk in stream for c in chunk.choices for o in c.logprobs.text_offset
        ]
        assert offsets == [0, 1, 2]


async def test_n_choices_with_seeds_one_apart(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("一", "二", "三")
        model = (await sdk.models.list()).data[0].id
        reply = await sdk.chat.completions.create(model=model, messages=QUESTION, n=3, seed=7)
        assert [(c.index, c.message.content) for c in reply.choices] == [
            (0, "一"),
            (1, "二"),
            (2, "三"),
        ]
        assert [p.seed for _, p in api.engine.calls] == [7, 8, 9]
        assert len({tuple(ids) for ids, _ in api.engine.calls}) == 1  # one prompt, three choices
        assert reply.usage.completion_tokens == 3
        assert reply.usage.prompt_tokens == len(api.engine.calls[0][0])  # counted once


async def test_n_streamed_choices_each_end_with_their_finish_reason(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("甲甲甲。", "乙乙。")
        model = (await sdk.models.list()).data[0].id
        stream = await sdk.chat.completions.create(model=model, messages=QUESTION, n=2, stream=True)
        texts, finishes = {0: "", 1: ""}, {}
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason
        assert texts == {0: "甲甲甲。", 1: "乙乙。"} and finishes == {0: "stop", 1: "stop"}


async def test_completions_number_choices_prompt_by_prompt(start_api):
    async with sdk_on(start_api) as (sdk, api):
        api.engine.queue("a1", "a2", "b1", "b2")
        model = (await sdk.models.list()).data[0].id
        reply = await sdk.completions.create(model=model, prompt=["a", "b"], n=2)
        assert [(c.index, c.text) for c in reply.choices] == [
            (0, "a1"),
            (1, "a2"),
            (2, "b1"),
            (3, "b2"),
        ]
        prompts = [
            api.app.state.openai_serving.prompts.tokenizer.decode(i) for i, _ in api.engine.calls
        ]
        assert prompts == ["a", "a", "b", "b"]


async def test_more_choices_than_a_batch_may_hold_is_a_400_naming_n(start_api):
    async with sdk_on(start_api, max_batch_size=4) as (sdk, api):
        model = (await sdk.models.list()).data[0].id
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.completions.create(model=model, prompt=["a", "b", "c"], n=2)
        assert refused.value.body["param"] == "n" and api.engine.calls == []


async def test_missing_key_is_a_401_in_openai_shape(start_api):
    async with start_api(api_key=list(API_KEYS)) as api:
        denied = await api.http.get("/v1/models")
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"


async def test_engine_failure_is_an_openai_500(start_api):
    async with sdk_on(start_api) as (sdk, api):
        model = (await sdk.models.list()).data[0].id
        api.engine.failure = RuntimeError("device lost")
        with pytest.raises(openai.InternalServerError) as raised:
            await sdk.chat.completions.create(model=model, messages=QUESTION)
        error = raised.value.body
        assert error["type"] == "server_error" and "device lost" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": QUESTION, "stream": True}),
        ("/v1/completions", {"prompt": ["a", "b"], "stream": True, "max_tokens": 8}),
    ],
)
async def test_a_stream_that_fails_midway_sends_an_error_event_and_done(start_api, path, body):
    async with start_api() as api:
        api.engine.queue("很长的一段回答。", "另一段很长的回答。")
        api.engine.failure, api.engine.fail_after_pieces = RuntimeError("device lost"), 1
        reply = await api.http.post(path, json=body)
        assert reply.status_code == 200  # the failure came after the headers
        events = sse_data(reply.text)
        assert events[-1] == "[DONE]"
        error = orjson.loads(events[-2])["error"]
        assert error["type"] == "server_error" and "device lost" in error["message"]
        assert len(events) >= 3  # the pieces before the failure were delivered


async def test_openapi_describes_every_response_and_each_body(start_api):
    async with start_api() as api:
        document = (await api.http.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"]["200"]["content"]
            assert all(kind["schema"] for kind in content.values()), f"{method} {path}"
            if method == "post":
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert "$defs" not in orjson.dumps(body).decode(), f"{path}: unresolved refs"
    assert {"/", "/health", "/predict", "/v1/chat/completions"} <= document["paths"].keys()


IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"tools": [{"type": "function"}]}, "tools"),
        ("/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice"),
        ("/v1/chat/completions", {"response_format": {"type": "json_object"}}, "response_format"),
        ("/v1/chat/completions", {"logit_bias": {"1": 5}}, "logit_bias"),
        ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [IMAGE_PART]}]},
            "messages.0.content",
        ),
        ("/v1/completions", {"suffix": "end"}, "suffix"),
        ("/v1/chat/completions", {"prompt_logprobs": 1}, "prompt_logprobs"),
        ("/v1/completions", {"best_of": 2}, "best_of"),
    ],
)
async def test_fields_the_server_cannot_honour_are_refused_by_name(start_api, path, fields, param):
    base = {"messages": QUESTION} if "chat" in path else {"prompt": "q"}
    async with start_api() as api:
        reply = await api.http.post(path, json={**base, **fields})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"].startswith(param)
        assert api.engine.calls == []


async def test_fields_that_ask_for_nothing_and_text_parts_are_accepted(start_api):
    async with start_api() as api:
        parts = [{"type": "text", "text": "什么是"}, {"type": "text", "text": "warp？"}]
        body = {
            "messages": [{"role": "user", "content": parts}],
            "logprobs": False,
            "tools": [],
            "tool_choice": "none",
            "response_format": {"type": "text"},
            "user": "someone",  # informational in OpenAI's API: nothing to honour
        }
        reply = await api.http.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        prompt = api.app.state.openai_serving.prompts.tokenizer.decode(api.engine.calls[0][0])
        assert "什么是warp？" in prompt


async def test_echo_puts_the_prompt_and_its_logprobs_first(start_api):
    async with start_api() as api:
        api.engine.queue("答案", "答案")
        body = {"prompt": "共享内存", "max_tokens": 2, "logprobs": 1, "echo": True}
        whole = (await api.http.post("/v1/completions", json=body)).json()["choices"][0]
        prompt_ids = api.engine.calls[0][0]
        assert api.engine.calls[0][1].prompt_logprobs == 1
        streamed = await api.http.post("/v1/completions", json={**body, "stream": True})
    assert whole["text"] == "共享内存答案"
    logprobs = whole["logprobs"]
    # The prompt's tokens first (the first predicted by nothing), then the answer's.
    assert len(logprobs["tokens"]) == len(prompt_ids) + 2
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert logprobs["tokens"][1 : len(prompt_ids)] == [f"<{i}>" for i in prompt_ids[1:]]
    assert logprobs["token_logprobs"][1:] == [-0.5] * (len(prompt_ids) - 1) + [-1.0, -0.5]
    assert logprobs["tokens"][-2:] == ["答", "案"]
    chunks = [orjson.loads(d) for d in sse_data(streamed.text)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "共享内存答案"
    assert chunks[0]["choices"][0]["text"].startswith("共享内存")
    assert sum(len(c["choices"][0]["logprobs"]["tokens"]) for c in chunks) == len(prompt_ids) + 2


async def test_prompt_logprobs_come_in_vllms_shape_beside_the_choice(start_api):
    async with start_api() as api:
        body = {"prompt": "共享内存", "max_tokens": 2, "prompt_logprobs": 2}
        whole = (await api.http.post("/v1/completions", json=body)).json()["choices"][0]
        prompt_ids = api.engine.calls[0][0]
        assert whole["logprobs"] is None and not whole["text"].startswith("共享内存")
        positions = whole["prompt_logprobs"]
        assert positions[0] is None and len(positions) == len(prompt_ids)
        for token_id, position in zip(prompt_ids[1:], positions[1:], strict=True):
            assert position[str(token_id)] == {
                "logprob": -0.5,
                "rank": 1,
                "decoded_token": f"<{token_id}>",
            }
            assert position["1001"] == {"logprob": -2.0, "rank": 2, "decoded_token": "x"}
        # With echo and logprobs, vLLM's rule: prompt_logprobs, when given, sets the count.
        echoed = {**body, "echo": True, "logprobs": 1, "prompt_logprobs": 3}
        assert (await api.http.post("/v1/completions", json=echoed)).status_code == 200
        assert api.engine.calls[-1][1].prompt_logprobs == 3


async def test_prompts_as_token_ids_and_echo_without_logprobs(start_api):
    async with start_api() as api:
        tokenizer = api.app.state.openai_serving.prompts.tokenizer
        ids = tokenizer("线程束")["input_ids"]
        body = {"prompt": [ids, ids], "max_tokens": 3, "echo": True}
        reply = (await api.http.post("/v1/completions", json=body)).json()
        assert [call[0] for call in api.engine.calls] == [ids, ids]
        assert [c["text"] for c in reply["choices"]] == ["线程束" + "这是答"] * 2
        assert reply["choices"][0]["logprobs"] is None
        assert api.engine.calls[0][1].prompt_logprobs is None
        one = await api.http.post("/v1/completions", json={"prompt": ids, "max_tokens": 1})
        assert one.status_code == 200 and api.engine.calls[-1][0] == ids
        outside = await api.http.post("/v1/completions", json={"prompt": [5, 10**9]})
        assert outside.status_code == 400 and outside.json()["error"]["param"] == "prompt"
        assert "10000000" in outside.json()["error"]["message"]
