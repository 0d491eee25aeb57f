"""vLLM's /tokenize and /detokenize on the fake engine: the ids are the ones the server's own
chats and completions send to the engine, the text comes back, bad input is a 400 naming its
field, and the /v1 key rule holds."""

import pytest
from transformers import AutoTokenizer

from tests.constants import API_KEYS

pytestmark = pytest.mark.anyio

KEY = {"Authorization": f"Bearer {API_KEYS[0]}"}
MESSAGES = [
    {"role": "system", "content": "简短回答。"},
    {"role": "user", "content": "什么是warp？"},
]


async def test_messages_give_the_ids_a_chat_sends_the_engine(start_api):
    async with start_api(api_key=list(API_KEYS)) as api:
        for mode in ("fast", "slow"):
            counted = await api.http.post(
                "/tokenize", json={"messages": MESSAGES, "mode": mode}, headers=KEY
            )
            chat = {"messages": MESSAGES, "mode": mode, "max_tokens": 4}
            reply = await api.http.post("/v1/chat/completions", json=chat, headers=KEY)
            sent_ids = api.engine.calls[-1][0]
            assert counted.json()["tokens"] == sent_ids
            assert counted.json()["count"] == reply.json()["usage"]["prompt_tokens"]
        context = (await api.http.get("/v1/models", headers=KEY)).json()["data"][0]["max_model_len"]
        assert counted.json()["max_model_len"] == context


async def test_a_prompt_gives_the_ids_a_completion_sends_and_detokenize_gives_it_back(start_api):
    prompt = "共享内存 shared memory ⚡"
    async with start_api() as api:
        counted = (await api.http.post("/tokenize", json={"prompt": prompt})).json()
        await api.http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 2})
        assert counted["tokens"] == api.engine.calls[-1][0]
        assert counted["token_strs"] is None
        back = await api.http.post("/detokenize", json={"tokens": counted["tokens"]})
        assert back.json() == {"prompt": prompt}


async def test_token_strings_and_the_chat_template_switches(start_api, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    async with start_api() as api:
        body = {"prompt": "warp 调度", "return_token_strs": True}
        counted = (await api.http.post("/tokenize", json=body)).json()
        assert counted["token_strs"] == tokenizer.convert_ids_to_tokens(counted["tokens"])
        # Continuing the last message: the rendered text ends with it, no generation prompt.
        prefill = [*MESSAGES, {"role": "assistant", "content": "warp是"}]
        body = {"messages": prefill, "add_generation_prompt": False, "continue_final_message": True}
        ids = (await api.http.post("/tokenize", json=body)).json()["tokens"]
        assert tokenizer.decode(ids).endswith("warp是")


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({}, None, "one of prompt and messages"),
        ({"prompt": "a", "messages": MESSAGES}, None, "one of prompt and messages"),
        ({"prompt": "a", "mode": "slow"}, None, "mode: for messages only"),
        ({"messages": MESSAGES, "continue_final_message": True}, None, "add_generation_prompt"),
        ({"prompt": 5}, "prompt", "string"),
        ({"prompt": "a", "model": "gpt-9"}, "model", "gpt-9"),
    ],
)
async def test_bad_tokenize_requests_are_400s_that_say_why(start_api, body, param, words):
    async with start_api() as api:
        reply = await api.http.post("/tokenize", json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param and words in error["message"]


@pytest.mark.parametrize(
    ("tokens", "words"), [([1, 10**9], "token 1000000000 is not in the"), ([-1], "tokens.0")]
)
async def test_detokenize_refuses_ids_outside_the_vocabulary(start_api, tokens, words):
    async with start_api() as api:
        reply = await api.http.post("/detokenize", json={"tokens": tokens})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"].startswith("tokens")
    assert words in reply.json()["error"]["message"]


async def test_the_v1_key_rule_holds(start_api):
    async with start_api(api_key=list(API_KEYS)) as api:
        refused = await api.http.post("/tokenize", json={"prompt": "a"})
        assert refused.status_code == 401 and refused.json()["error"]["type"]
        refused = await api.http.post("/detokenize", json={"tokens": [1]})
        assert refused.status_code == 401
        assert (await api.http.post("/detokenize", json={"tokens": [1]}, headers=KEY)).is_success
