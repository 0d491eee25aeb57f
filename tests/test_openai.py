"""The /v1 API through the official OpenAI SDK, against the shared live server."""

import json
import time

import httpx
import openai
import pytest
from tokenizers import Tokenizer

from devtools.launcher import ROOT
from prep.datafile import read_questions
from tests.constants import API_KEYS

pytestmark = pytest.mark.judge_stack  # engine-facing: run on vLLM 0.10 too

QUESTION = [{"role": "user", "content": "什么是CUDA中的warp？"}]


def test_models_lists_the_served_model(sdk, tiny_model):
    models = sdk.models.list().data
    assert [m.id for m in models] == [tiny_model.name]


def test_chat_answers_with_usage_and_finish_reason(sdk, model):
    reply = sdk.chat.completions.create(model=model, messages=QUESTION, max_tokens=6)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6
    assert choice.message.reasoning_content is None  # fast mode is the default


def test_multi_turn_history_reaches_the_model(sdk, model):
    history = [
        {"role": "system", "content": "简短回答。"},
        {"role": "user", "content": "什么是warp？"},
        {"role": "assistant", "content": "32个线程。"},
        {"role": "user", "content": "那线程块呢？"},
    ]
    long = sdk.chat.completions.create(model=model, messages=history, max_completion_tokens=4)
    short = sdk.chat.completions.create(model=model, messages=history[-1:], max_tokens=4)
    assert long.usage.prompt_tokens > short.usage.prompt_tokens
    assert long.usage.completion_tokens == 4


def test_stream_matches_the_whole_answer_and_reports_usage(sdk, model):
    whole = sdk.chat.completions.create(model=model, messages=QUESTION, max_tokens=12)
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=QUESTION,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_slow_mode_returns_reasoning_apart(sdk, model):
    slow = sdk.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=10, extra_body={"mode": "slow"}
    )
    by_kwargs = sdk.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=10,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}},
    )
    message = slow.choices[0].message
    # The random model never closes its think block: the whole budget is reasoning.
    assert message.reasoning_content and message.content == ""
    assert message.reasoning == message.reasoning_content
    assert by_kwargs.choices[0].message.reasoning_content == message.reasoning_content
    streamed = sdk.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=10, stream=True, extra_body={"mode": "slow"}
    )
    pieces = [getattr(c.choices[0].delta, "reasoning_content", None) for c in streamed]
    assert "".join(p for p in pieces if p) == message.reasoning_content


def _chat_text(chunk: dict) -> bool:
    return bool(chunk["choices"] and chunk["choices"][0]["delta"].get("content"))


def _response_text(event: dict) -> bool:
    return event["type"] == "response.output_text.delta"


@pytest.mark.parametrize(
    ("path", "body", "has_text"),
    [
        ("/v1/chat/completions", {"messages": QUESTION, "max_tokens": 900}, _chat_text),
        ("/v1/responses", {"input": QUESTION, "max_output_tokens": 900}, _response_text),
    ],
)
def test_client_disconnect_aborts_the_engine_request(server, model, path, body, has_text):
    def engine_stats():
        return httpx.get(server.url + "/info").json()["engine_stats"]

    before = engine_stats()
    body = {"model": model, **body, "stream": True}
    headers = {"Authorization": f"Bearer {API_KEYS[0]}"}
    with httpx.stream(
        "POST", server.url + path, json=body, headers=headers, timeout=60
    ) as response:
        # Hang up once the engine has produced text: the first events (the role, the response
        # created) can come before the engine request exists, and a hang-up then leaves
        # nothing to abort.
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue  # the blank line between events, or an event's name
            if has_text(json.loads(line.removeprefix("data: "))):
                break
        else:
            pytest.fail("the stream ended before any text")
    deadline = time.monotonic() + 20
    while (stats := engine_stats())["aborted"] == before["aborted"] or stats["running"]:
        assert time.monotonic() < deadline, f"engine request not aborted: {stats}"
        time.sleep(0.1)


def test_completions_take_a_string_or_a_list(sdk, model):
    one = sdk.completions.create(model=model, prompt="__global__ void", max_tokens=5)
    assert len(one.choices) == 1 and one.usage.completion_tokens == 5
    many = sdk.completions.create(model=model, prompt=["线程", "内存", "warp"], max_tokens=4)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.usage.completion_tokens == 12
    streamed: dict[int, str] = {}
    for chunk in sdk.completions.create(
        model=model, prompt=["线程", "内存", "warp"], max_tokens=4, stream=True
    ):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + choice.text
    assert [streamed[i] for i in range(3)] == [c.text for c in many.choices]


def test_chat_logprobs_are_the_engines_and_greedy_picks_the_likeliest(sdk, model):
    reply = sdk.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=8, logprobs=True, top_logprobs=3
    )
    tokens = reply.choices[0].logprobs.content
    assert len(tokens) == 8
    for token in tokens:
        ranked = [alternative.logprob for alternative in token.top_logprobs]
        assert len(ranked) == 3 and ranked == sorted(ranked, reverse=True)
        # Greedy decoding (the default temperature 0) chose the top alternative.
        assert token.token == token.top_logprobs[0].token
        assert token.logprob == pytest.approx(ranked[0]) and token.logprob <= 0


def test_completion_logprobs_spell_out_the_text(sdk, model):
    choice = sdk.completions.create(
        model=model, prompt="__global__ void", max_tokens=6, logprobs=2
    ).choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    starts = zip(logprobs.text_offset, logprobs.tokens, strict=True)
    assert all(choice.text[offset:].startswith(token) for offset, token in starts)
    # Two alternatives each (fewer only where two tokens decode to the same text).
    assert all(1 <= len(alternatives) <= 2 for alternatives in logprobs.top_logprobs)


def test_n_choices_are_seed_plus_index_as_in_vllm(sdk, model):
    sampled = {"model": model, "prompt": "线程", "max_tokens": 12, "temperature": 1.0}
    three = sdk.completions.create(**sampled, n=3, seed=5)
    texts = [c.text for c in three.choices]
    assert [c.index for c in three.choices] == [0, 1, 2] and len(set(texts)) > 1
    alone = [sdk.completions.create(**sampled, seed=5 + i).choices[0].text for i in range(3)]
    assert alone == texts
    chat = sdk.chat.completions.create(model=model, messages=QUESTION, max_tokens=4, n=2)
    assert [c.index for c in chat.choices] == [0, 1] and chat.usage.completion_tokens == 8


def test_default_completion_budget_is_openais_16(sdk, model):
    assert sdk.completions.create(model=model, prompt="线程").usage.completion_tokens == 16


def test_api_key_is_required_on_v1_only(server, model):
    for key in API_KEYS:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        assert client.models.list().data[0].id == model
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.models.list()
    assert denied.value.body["code"] == "invalid_api_key"
    missing = httpx.post(server.url + "/v1/chat/completions", json={"messages": QUESTION})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert httpx.post(server.url + "/predict", json={"prompt": "q"}, timeout=60).status_code == 200


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "很长的问题 " * 2000}]}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"n": 0}, "n"),
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
        ({"top_p": 0}, "top_p"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_parameter(sdk, model, change, param):
    request = {"model": model, "messages": QUESTION, "max_tokens": 4, **change}
    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(**request)
    assert error.value.status_code == 400
    assert error.value.body["param"] == param
    assert error.value.body["type"] == "invalid_request_error"


def test_invalid_json_is_a_400_in_openai_shape(server):
    response = httpx.post(
        server.url + "/v1/completions",
        content="{oops",
        headers={"Authorization": f"Bearer {API_KEYS[0]}"},
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_tokenize_counts_the_prompt_the_engine_takes(server, sdk, model):
    key = {"Authorization": f"Bearer {API_KEYS[0]}"}
    body = {"model": model, "messages": QUESTION}
    counted = httpx.post(server.url + "/tokenize", json=body, headers=key).json()
    room = counted["max_model_len"] - counted["count"]
    # The whole context to the last token: the engine takes the prompt as /tokenize counted it.
    reply = sdk.chat.completions.create(model=model, messages=QUESTION, max_tokens=room)
    assert reply.usage.prompt_tokens == counted["count"] and reply.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="context"):
        sdk.chat.completions.create(model=model, messages=QUESTION, max_tokens=room + 1)
    tokens = {"tokens": counted["tokens"]}
    text = httpx.post(server.url + "/detokenize", json=tokens, headers=key).json()["prompt"]
    assert text.count(QUESTION[0]["content"]) == 1


def test_echo_gives_the_prompt_tokens_logprobs_before_the_answer(server, sdk, model):
    """As lm-evaluation-harness scores a continuation: echo, logprobs, one new token."""
    key = {"Authorization": f"Bearer {API_KEYS[0]}"}
    prompt = "共享内存和全局内存的区别"
    counted = httpx.post(server.url + "/tokenize", json={"prompt": prompt}, headers=key).json()
    plain = sdk.completions.create(model=model, prompt=prompt, max_tokens=3, logprobs=2)
    echoed = sdk.completions.create(
        model=model, prompt=counted["tokens"], max_tokens=3, logprobs=2, echo=True
    )
    choice, answer = echoed.choices[0], plain.choices[0]
    assert choice.text == prompt + answer.text
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == counted["count"] + 3
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(lp <= 0 for lp in logprobs.token_logprobs[1:])
    assert all(len(top) >= 2 for top in logprobs.top_logprobs[1:])
    # The answer's part is the answer's own logprobs (greedy, float32).
    generated = logprobs.token_logprobs[-3:]
    assert generated == pytest.approx(answer.logprobs.token_logprobs, abs=1e-4)
    assert echoed.usage.prompt_tokens == counted["count"]


def test_answers_decoded_once_at_the_end_are_vllms_token_by_token_text(
    server, sdk, model, tiny_model
):
    """A whole answer is decoded once, when it is done, and the engine holds its steps: it
    leaves the engine in two outputs, its first and its last (most of the server's CPU per
    token saved); a streamed one leaves it step by step and vLLM decodes it token by token.
    Same prompts, greedy: the texts must be equal, with answers cut at every length (inside a
    character too). Token-id prompts that end inside a character, whose text vLLM decodes its
    own way, must come out equal too."""
    info = httpx.get(server.url + "/info").json()
    assert info["engine_details"]["detokenize"].startswith("once per answer at its end")
    assert info["engine_details"]["held_steps"].startswith("in the engine core")
    tok = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    prompts = [tok.encode(q).ids for q in read_questions(ROOT / "data.jsonl")[:24]]
    first_byte = tok.token_to_id("ç")  # the first byte of 程 (and of many more) alone
    prompts += [[*ids, first_byte] for ids in prompts[:4]]
    compared = whole_outputs = streamed_outputs = tokens = 0
    budgets = (1, 2, 3, 5, 8, 13, 21, 40)
    for budget in budgets:
        body = {"model": model, "prompt": prompts, "max_tokens": budget, "temperature": 0}
        before = engine_outputs(server)
        whole = sdk.completions.create(**body)
        whole_outputs += engine_outputs(server) - before
        tokens += whole.usage.completion_tokens
        before = engine_outputs(server)
        streamed: dict[int, str] = {}
        finishes: dict[int, str] = {}
        for chunk in sdk.completions.create(**body, stream=True):
            for choice in chunk.choices:
                streamed[choice.index] = streamed.get(choice.index, "") + choice.text
                finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)
        streamed_outputs += engine_outputs(server) - before
        for choice in whole.choices:
            assert choice.text == streamed[choice.index], (budget, prompts[choice.index])
            assert choice.finish_reason == finishes[choice.index]
            compared += 1
    assert compared == 8 * 28
    # One output per token streamed (a step makes one); at most two per whole answer, but for
    # the 4 prompts that end inside a character (vLLM decodes those, step by step).
    assert streamed_outputs == tokens > 4 * compared, (streamed_outputs, tokens)
    assert whole_outputs <= 2 * 24 * len(budgets) + 4 * sum(budgets), whole_outputs


def engine_outputs(server) -> int:
    """The outputs the engine has sent the server so far."""
    return httpx.get(server.url + "/info").json()["engine_stats"]["engine_outputs"]
