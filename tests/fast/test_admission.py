"""Overload without loss, on the fake engine: admission limits (429 with Retry-After in each
API's shape, refused before tokenizing), the lone request that is always admitted, priorities,
/ready, and the drain on SIGTERM (503 with Connection: close, the deadline's errors)."""

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from tests.metrics_text import growth, scrape

pytestmark = pytest.mark.anyio

CHAT = {"messages": [{"role": "user", "content": "什么是warp？"}]}


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def record_tokenizing(api, monkeypatch) -> list[str]:
    """The names of the tokenizer calls the server makes from now on."""
    prompts = api.app.state.openai_serving.prompts  # the answerer's too
    seen: list[str] = []
    for name in ("token_ids", "token_ids_many", "completion_ids"):
        original = getattr(prompts, name)

        def recording(*args, _name=name, _original=original):
            seen.append(_name)
            return _original(*args)

        monkeypatch.setattr(prompts, name, recording)
    return seen


def held(api) -> asyncio.Event:
    gate = asyncio.Event()
    api.engine.gate = gate
    return gate


async def info(api) -> dict:
    return (await api.http.get("/info")).json()


async def test_past_the_request_limit_both_apis_refuse_with_429_and_retry_after(
    start_api, monkeypatch
):
    async with start_api(max_requests_in_flight=1, retry_after_seconds=7) as api:
        gate = held(api)
        first = asyncio.create_task(api.http.post("/predict", json={"prompt": ["a", "b"]}))
        await until(lambda: len(api.engine.calls) == 1)
        tokenized = record_tokenizing(api, monkeypatch)
        before = scrape((await api.http.get("/metrics")).text)

        refused = await api.http.post("/predict", json={"prompt": "q"})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
        assert "MAX_REQUESTS_IN_FLIGHT=1" in refused.json()["detail"]
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", {"prompt": "q"})):
            reply = await api.http.post(path, json=body)
            assert reply.status_code == 429 and reply.headers["Retry-After"] == "7"
            error = reply.json()["error"]
            assert (error["type"], error["code"], error["param"]) == (
                "requests",
                "rate_limit_exceeded",
                None,
            )
            assert "retry after 7 s" in error["message"]
        assert tokenized == [] and len(api.engine.calls) == 1  # refused before any work
        admission = (await info(api))["admission"]
        assert admission["requests_in_flight"] == 1 and admission["items_in_flight"] == 2
        assert (await api.http.get("/ready")).status_code == 503
        assert (await api.http.get("/")).json() == {"status": "ok"}  # alive all the same

        gate.set()
        assert (await first).json()["response"] == ["这是答案。"] * 2
        after = scrape((await api.http.get("/metrics")).text)
        admission = (await info(api))["admission"]
    assert admission["admitted"] == 1 and admission["refused_requests"] == 3
    assert admission["requests_in_flight"] == admission["items_in_flight"] == 0

    grew = growth(before, after)
    assert grew("qaserve_refused_total", route="/predict", reason="requests") == 1
    assert grew("qaserve_refused_total", route="/v1/completions", reason="requests") == 1
    assert grew("qaserve_requests_total", route="/v1/chat/completions", status="429") == 1
    assert grew("qaserve_admitted_items_in_flight") == -2


async def test_the_item_limit_counts_batch_prompts_and_prompts_times_n(start_api):
    async with start_api(max_items_in_flight=5) as api:
        gate = held(api)
        batch = asyncio.create_task(api.http.post("/predict", json={"prompt": ["a", "b", "c"]}))
        await until(lambda: len(api.engine.calls) == 1)
        too_many = {"prompt": ["x", "y"], "n": 2}  # 4 items: 3 + 4 > 5
        reply = await api.http.post("/v1/completions", json=too_many)
        assert reply.status_code == 429
        assert "MAX_ITEMS_IN_FLIGHT=5" in reply.json()["error"]["message"]
        assert (await api.http.get("/ready")).status_code == 200  # one more item still fits
        chat = asyncio.create_task(api.http.post("/v1/chat/completions", json={**CHAT, "n": 2}))
        await until(lambda: len(api.engine.calls) == 2)  # 3 + 2 = 5: admitted
        assert (await api.http.post("/predict", json={"prompt": "q"})).status_code == 429
        ready = await api.http.get("/ready")
        assert ready.status_code == 503 and "MAX_ITEMS_IN_FLIGHT=5" in ready.json()["detail"]
        gate.set()
        assert (await batch).status_code == 200 and (await chat).status_code == 200
        assert (await api.http.get("/ready")).json() == {"status": "ready"}
        admission = (await info(api))["admission"]
    assert (admission["admitted"], admission["refused_items"]) == (2, 2)


async def test_a_lone_request_is_admitted_whatever_its_size(start_api):
    async with start_api(max_items_in_flight=2, max_requests_in_flight=1) as api:
        reply = await api.http.post("/predict", json={"prompt": [f"q{i}" for i in range(50)]})
        assert reply.status_code == 200 and len(reply.json()["response"]) == 50
        chat = await api.http.post("/v1/chat/completions", json={**CHAT, "n": 10})
        assert chat.status_code == 200 and len(chat.json()["choices"]) == 10


async def test_no_limit_when_set_to_zero(start_api):
    async with start_api(max_items_in_flight=0, max_requests_in_flight=0) as api:
        gate = held(api)
        work = [
            asyncio.create_task(api.http.post("/predict", json={"prompt": ["a"] * 20}))
            for _ in range(5)
        ]
        await until(lambda: len(api.engine.calls) == 5)
        assert (await api.http.get("/ready")).status_code == 200
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*work)] == [200] * 5


async def test_predict_items_go_after_v1_requests_by_priority(start_api):
    async with start_api(predict_priority=7) as api:
        await api.http.post("/predict", json={"prompt": ["a", "b"]})
        await api.http.post("/v1/chat/completions", json=CHAT)
        await api.http.post("/v1/completions", json={"prompt": "q", "priority": -3})
        stream = await api.http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert stream.text.endswith("data: [DONE]\n\n")
        assert [params.priority for _, params in api.engine.calls] == [7, 7, 0, -3, 0]
        reply = await api.http.post("/v1/chat/completions", json={**CHAT, "priority": 2**31})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "priority"


async def test_openapi_documents_the_429_of_each_generating_route(start_api):
    async with start_api() as api:
        paths = (await api.http.get("/openapi.json")).json()["paths"]
    for path in ("/predict", "/v1/chat/completions", "/v1/completions"):
        assert "429" in paths[path]["post"]["responses"], path
    assert "429" not in paths["/info"]["get"]["responses"]
    assert paths["/ready"]["get"]["responses"]["200"]


async def test_sigterm_drains_then_hands_the_signal_on(start_api):
    heard: list[int] = []

    def hear(signum, frame) -> None:  # the handler a SIGTERM goes on to (uvicorn's, in a server)
        heard.append(signum)

    original = signal.signal(signal.SIGTERM, hear)
    try:
        async with start_api(shutdown_timeout_seconds=30) as api:
            gate = held(api)
            admitted = asyncio.create_task(api.http.post("/predict", json={"prompt": ["a"]}))
            await until(lambda: len(api.engine.calls) == 1)
            os.kill(os.getpid(), signal.SIGTERM)
            await until(lambda: api.app.state.admission.draining)

            ready = await api.http.get("/ready")
            assert ready.status_code == 503 and "draining" in ready.json()["detail"]
            assert (await api.http.get("/")).json() == {"status": "ok"}  # the judge's contract
            late = await api.http.post("/predict", json={"prompt": "q"})
            assert late.status_code == 503 and late.headers["Connection"] == "close"
            assert "shutting down" in late.json()["detail"]
            chat = await api.http.post("/v1/chat/completions", json=CHAT)
            assert chat.status_code == 503 and chat.headers["Connection"] == "close"
            assert chat.json()["error"]["code"] == "server_shutting_down"
            assert heard == []  # the drain waits for the admitted batch

            os.kill(os.getpid(), signal.SIGTERM)  # a second one goes on at once
            await until(lambda: heard == [signal.SIGTERM])
            gate.set()
            reply = await admitted
            assert reply.status_code == 200 and reply.json() == {"response": ["这是答案。"]}
            await until(lambda: heard == [signal.SIGTERM, signal.SIGTERM])
            admission = (await info(api))["admission"]
        assert admission["refused_draining"] == 2 and admission["abandoned"] == 0
        assert signal.getsignal(signal.SIGTERM) is hear  # given back as the app stopped
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_past_the_shutdown_timeout_admitted_work_gets_an_error_never_a_cut_answer(
    start_api,
):
    async with start_api() as api:
        held(api)  # never opens
        requests = {
            "predict": api.http.post("/predict", json={"prompt": ["a", "b"]}),
            "chat": api.http.post("/v1/chat/completions", json=CHAT),
            "stream": api.http.post("/v1/chat/completions", json={**CHAT, "stream": True}),
        }
        tasks = {name: asyncio.create_task(request) for name, request in requests.items()}
        await until(lambda: len(api.engine.calls) == 3)
        await api.app.state.admission.drain(0.05)
        replies = {name: await task for name, task in tasks.items()}
        admission = (await info(api))["admission"]

    predict = replies["predict"]
    assert predict.status_code == 503 and predict.headers["Connection"] == "close"
    assert "SHUTDOWN_TIMEOUT_SECONDS=0.05" in predict.json()["detail"]
    chat = replies["chat"]
    assert chat.status_code == 503 and chat.json()["error"]["code"] == "server_shutting_down"
    events = [line for line in replies["stream"].text.split("\n\n") if line]
    assert '"role":"assistant"' in events[0]  # sent before the engine answered
    assert '"code":"server_shutting_down"' in events[-2] and events[-1] == "data: [DONE]"
    assert admission["abandoned"] == 3 and admission["requests_in_flight"] == 0
