"""VLLM_ENGINE_ARGS on the real engine: an argument this vLLM lacks stops the server (no
fallback); one it has reaches the engine and shows in /info and in what the engine does."""

import httpx
import pytest

from devtools.launcher import Server
from devtools.tiny_model import tiny_engine_env

pytestmark = pytest.mark.judge_stack


def test_an_unknown_engine_argument_stops_the_server_without_fallback(tiny_model, tmp_path):
    vllm = pytest.importorskip("vllm")
    env = tiny_engine_env(tiny_model, VLLM_ENGINE_ARGS='{"no_such_arg": 1}')
    server = Server(env, tmp_path / "server.log")
    with pytest.raises(RuntimeError, match=r"server exited with [1-9]") as failure:
        server.start()
    print(f"\nunknown engine argument: {str(failure.value).splitlines()[0]}")
    log = server.log()
    assert f"not an argument of vLLM {vllm.__version__}'s AsyncEngineArgs: no_such_arg" in log
    assert "configuration error, the server stops (no fallback)" in log
    assert "FALLBACK" not in log and "serving on transformers" not in log


def test_an_accepted_engine_argument_reaches_the_engine(tiny_model, tmp_path):
    env = tiny_engine_env(
        tiny_model, VLLM_ENGINE_ARGS='{"max_logprobs": 3}', WARMUP_NUM_SAMPLES="1"
    )
    with (
        Server(env, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        info = http.get("/info").json()
        assert info["backend"] == "vllm", info["fallback_reason"]
        assert info["settings"]["vllm_engine_args"] == {"max_logprobs": 3}
        assert info["engine_details"]["engine_args"]["max_logprobs"] == 3
        chat = {"messages": [{"role": "user", "content": "warp"}], "max_tokens": 2}
        within = http.post(
            "/v1/chat/completions", json={**chat, "logprobs": True, "top_logprobs": 3}
        )
        assert within.status_code == 200, within.text
        beyond = http.post(
            "/v1/chat/completions", json={**chat, "logprobs": True, "top_logprobs": 4}
        )
        print(f"\ntop_logprobs beyond max_logprobs: {beyond.status_code} {beyond.text[:300]}")
        # vLLM's own refusal, at the limit the engine argument set (the server's default is 20).
        assert beyond.status_code >= 400 and "greater than max allowed: 3" in beyond.text
