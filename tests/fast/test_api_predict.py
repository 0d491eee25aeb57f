"""/, /health, /predict, /info and /system_prompt on the fake engine: routing, the length
plan each item gets, overrides, bad input, keys and error mapping."""

import asyncio

import pytest

from tests.constants import API_KEYS, DEFAULT_BUDGET, TEST_RULES
from tests.metrics_text import growth, scrape

pytestmark = pytest.mark.anyio

RULES = {"budget_rules": TEST_RULES, "max_new_tokens": DEFAULT_BUDGET}
BUDGETS = {rule["name"]: rule["max_tokens"] for rule in TEST_RULES}


async def test_health_on_both_routes_says_ok_or_batch(start_api):
    async with start_api() as api:
        for path in ("/", "/health"):
            assert (await api.http.get(path)).json() == {"status": "ok"}
    async with start_api(batch_mode=True) as api:
        assert (await api.http.get("/")).json() == {"status": "batch"}


async def test_each_item_gets_its_rule_budget_and_answers_keep_order(start_api):
    async with start_api(**RULES) as api:
        api.engine.queue("一。", "二。", "三。")
        prompts = ["写出向量加法的代码", "详细说明warp", "什么是线程块？"]
        reply = await api.http.post("/predict", json={"prompt": prompts})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"response": ["一。", "二。", "三。"]}
        budgets = [params.max_tokens for _, params in api.engine.calls]
        assert budgets == [BUDGETS["code"], BUDGETS["long"], DEFAULT_BUDGET]
        assert int(reply.headers["X-Output-Tokens"]) == 6
        assert float(reply.headers["X-Process-Seconds"]) > 0


async def test_single_prompt_gets_a_string_and_a_form_content_type_still_parses(start_api):
    async with start_api() as api:
        api.engine.queue("<think>想一想</think>\n\n答案。")
        reply = await api.http.post(
            "/predict",
            content='{"prompt": "什么是warp？"}',
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert reply.json() == {"response": "答案。"}  # reasoning removed


async def test_request_overrides_reach_the_engine_next_to_the_settings(start_api):
    async with start_api(stop_strings=["参考"], temperature=0.3, **RULES) as api:
        api.engine.queue("第一句。第二句。第三句。")
        body = {
            "prompt": "什么是warp？",
            "max_new_tokens": 7,
            "top_p": 0.5,
            "stop": ["END"],
            "seed": 3,
            "max_sentences": 1,
        }
        reply = await api.http.post("/predict", json=body)
        params = api.engine.calls[0][1]
        assert (params.max_tokens, params.top_p, params.seed) == (7, 0.5, 3)
        assert params.temperature == 0.3  # the setting, not overridden
        assert params.stop == ("参考", "END")
        assert params.max_sentences == 1
        assert reply.json() == {"response": "第一句。"}  # the cap also trims the text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": ["ok", 3]}, "prompt"),
        ({"prompt": "q", "temperature": 2.5}, "temperature"),
        ({"prompt": "q", "top_p": 0}, "top_p"),
        ({"prompt": "q", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "q", "max_sentences": -1}, "max_sentences"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(start_api, body, field):
    async with start_api() as api:
        reply = await api.http.post("/predict", json=body)
        assert reply.status_code == 422
        assert field in {part for issue in reply.json()["detail"] for part in issue["loc"]}
        assert api.engine.calls == []


async def test_invalid_json_and_oversized_batches_are_refused(start_api):
    async with start_api(max_batch_size=2) as api:
        broken = await api.http.post("/predict", content=b'{"prompt": ')
        assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
        big = await api.http.post("/predict", json={"prompt": ["a", "b", "c"]})
        assert big.status_code == 422
        assert "MAX_BATCH_SIZE=2" in big.json()["detail"][0]["msg"]


async def test_protect_predict_guards_predict_but_never_health(start_api):
    async with start_api(protect_predict=True, api_key=list(API_KEYS)) as api:
        for path in ("/", "/health"):
            assert (await api.http.get(path)).status_code == 200
        assert (await api.http.post("/predict", json={"prompt": "q"})).status_code == 401
        assert (await api.http.get("/info")).status_code == 401
        key = {"Authorization": f"Bearer {API_KEYS[0]}"}
        reply = await api.http.post("/predict", json={"prompt": "q"}, headers=key)
        assert reply.status_code == 200


async def test_an_engine_failure_is_a_json_500_that_names_it(start_api):
    async with start_api() as api:
        api.engine.failure = RuntimeError("device lost")
        reply = await api.http.post("/predict", json={"prompt": "q"})
        assert reply.status_code == 500
        assert "RuntimeError: device lost" in reply.json()["detail"]
        api.engine.failure = None
        assert (await api.http.post("/predict", json={"prompt": "q"})).status_code == 200


async def test_info_reports_backend_and_counts_only_real_traffic(start_api):
    async with start_api(warmup_num_samples=2) as api:
        warmed = len(api.engine.calls)
        await api.http.post("/predict", json={"prompt": ["a", "b"]})
        info = (await api.http.get("/info")).json()
        assert warmed == 2 and info["warmup"]["questions"] == 2
        assert info["backend"] == "fake" and info["vllm_version"] is None
        assert info["counters"]["requests"] == 1 and info["counters"]["items"] == 2
        assert info["context_length"] == 4096
        assert "api_key" not in info["settings"]


async def test_system_prompt_replaced_at_run_time_reaches_the_prompt(start_api):
    async with start_api() as api:
        await api.http.post("/system_prompt", json={"system_prompt": "只答一句。"})
        assert (await api.http.get("/system_prompt")).json() == {"system_prompt": "只答一句。"}
        await api.http.post("/predict", json={"prompt": "什么是warp？"})
        serving = api.app.state.predict_serving
        prompt = serving.answerer.prompts.tokenizer.decode(api.engine.calls[0][0])
        assert "<|im_start|>system\n只答一句。<|im_end|>" in prompt
        bad = await api.http.post("/system_prompt", json={"system_prompt": 1})
        assert bad.status_code == 422


async def test_a_dead_engine_answers_503_everywhere_then_the_server_exits(start_api):
    deaths = []

    async def record(engine):
        deaths.append(engine.dead_reason())

    settings = {"engine_check_seconds": 0.01, "engine_dead_exit_seconds": 1.5}
    async with start_api(on_engine_death=record, **settings) as api:
        assert (await api.http.get("/health")).status_code == 200
        api.engine.dead = "engine process 123 exited"
        for path in ("/", "/health"):
            health = await api.http.get(path)
            assert health.status_code == 503 and "123 exited" in health.json()["detail"]
        answer = await api.http.post("/predict", json={"prompt": "q"})
        assert answer.status_code == 503 and "restarted" in answer.json()["detail"]
        chat = await api.http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}
        )
        assert chat.status_code == 503 and chat.json()["error"]["code"] == "engine_dead"
        assert deaths == []  # 503s first, for ENGINE_DEAD_EXIT_SECONDS
        await asyncio.sleep(2)
        assert deaths == ["engine process 123 exited"]


async def test_every_answer_names_the_backend(start_api):
    async with start_api() as api:
        for reply in (
            await api.http.get("/"),
            await api.http.post("/predict", json={"prompt": "q"}),
            await api.http.post("/predict", json={}),
        ):
            assert reply.headers["X-Backend"] == "fake"


async def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(start_api):
    async with start_api(max_request_bytes=1000) as api:
        declared = await api.http.post("/predict", json={"prompt": "问" * 1000})
        assert declared.status_code == 413 and "MAX_REQUEST_BYTES=1000" in declared.json()["detail"]
        sent = []

        async def chunks():  # no Content-Length: the limit must hold while it streams
            for _ in range(100):
                sent.append(1)
                yield b'{"prompt": "' + b"x" * 400

        streamed = await api.http.post("/predict", content=chunks())
        assert streamed.status_code == 413
        assert len(sent) < 100  # refused before the rest arrived
        chat = await api.http.post("/v1/completions", content=chunks())
        assert chat.status_code == 413 and chat.json()["error"]["code"] == "request_too_large"
        assert (await api.http.post("/predict", json={"prompt": "q"})).status_code == 200


async def test_metrics_count_requests_items_and_tokens_by_route(start_api):
    async with start_api(protect_predict=True, api_key=list(API_KEYS)) as api:
        key = {"Authorization": f"Bearer {API_KEYS[0]}"}
        assert (await api.http.get("/metrics")).status_code == 401  # the same key rule
        before = scrape((await api.http.get("/metrics", headers=key)).text)
        api.engine.queue("一二三", "四五")
        await api.http.post("/predict", json={"prompt": ["a", "b"]}, headers=key)
        await api.http.post("/predict", json={}, headers=key)
        await api.http.get("/no-such-route")
        after = scrape((await api.http.get("/metrics", headers=key)).text)

    grew = growth(before, after)
    assert grew("qaserve_requests_total", route="/predict", status="200") == 1
    assert grew("qaserve_requests_total", route="/predict", status="422") == 1
    assert grew("qaserve_requests_total", route="other", status="404") == 1
    assert grew("qaserve_request_seconds_count", route="/predict") == 2
    assert grew("qaserve_predict_items_total") == 2
    assert grew("qaserve_output_tokens_total") == 5
    assert after[("qaserve_backend", (("backend", "fake"), ("version", "0")))] == 1
    assert ("qaserve_engine_aborted_total", ()) in after
    assert ("qaserve_requests_in_flight", (("route", "/predict"),)) in after
