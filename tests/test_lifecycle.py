"""Servers of their own: the transformers fallback, and a clean exit on SIGTERM."""

import signal
import threading

import httpx
import psutil
import pytest

from qaserve.devtools.launcher import UVICORN_CLI, Server
from qaserve.devtools.tiny_model import tiny_engine_env

# A value vLLM rejects while building its config, and transformers never reads.
BROKEN_FOR_VLLM = {"KV_CACHE_DTYPE": "no-such-dtype"}


def test_vllm_failure_falls_back_to_transformers(tiny_model, tmp_path):
    env = tiny_engine_env(tiny_model, **BROKEN_FOR_VLLM)
    # Started the other documented way, through uvicorn's command line.
    with (
        Server(env, tmp_path / "server.log", argv=UVICORN_CLI) as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        info = http.get("/info").json()
        assert info["backend"] == "transformers"
        assert "no-such-dtype" in info["fallback_reason"]
        assert "falling back to transformers" in server.log()
        assert http.get("/").json() == {"status": "ok"}
        prompts = ["什么是warp？", "写出向量加法的代码", "", "详细说明共享内存"]
        batch = http.post("/predict", json={"prompt": prompts, "max_tokens": 6}).json()
        alone = [http.post("/predict", json={"prompt": p, "max_tokens": 6}).json() for p in prompts]
        assert batch["response"] == [a["response"] for a in alone]
        assert all(isinstance(text, str) for text in batch["response"])


def test_use_vllm_true_refuses_to_fall_back(tiny_model, tmp_path):
    env = tiny_engine_env(tiny_model, USE_VLLM="1", **BROKEN_FOR_VLLM)
    with pytest.raises(RuntimeError, match="server exited") as failure:
        Server(env, tmp_path / "server.log").start()
    assert "no-such-dtype" in str(failure.value)


def test_sigterm_finishes_in_flight_work_and_leaves_no_process(tiny_model, tmp_path):
    env = tiny_engine_env(
        tiny_model,
        ENABLE_SPECULATIVE_DECODING="1",
        SPEC_METHOD="ngram",
        WARMUP_NUM_SAMPLES="1",
        SHUTDOWN_TIMEOUT_SECONDS="150",  # room to finish the batch on a loaded machine
    )
    with Server(env, tmp_path / "server.log") as server:
        info = httpx.get(server.url + "/info").json()
        assert info["engine_details"]["speculative_config"]["method"] == "ngram"
        family = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(True)]
        assert len(family) >= 2, "expected vLLM's engine process beside the server"

        # About 30k tokens: seconds of engine work, so SIGTERM surely lands mid-batch.
        payload = {"prompt": [f"问题{i}" for i in range(128)], "max_tokens": 240}
        outcome: dict = {}

        def send():
            try:
                outcome["response"] = httpx.post(server.url + "/predict", json=payload, timeout=300)
            except httpx.HTTPError as error:
                outcome["error"] = repr(error)

        sender = threading.Thread(target=send)
        sender.start()
        while httpx.get(server.url + "/info").json()["counters"]["in_flight"] == 0:
            assert sender.is_alive(), f"the batch ended before it was seen in flight: {outcome}"
        exit_code = server.terminate(timeout=200)
        sender.join(300)

        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert exit_code in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
        assert "vLLM engine shut down" in server.log()
        assert "response" in outcome, outcome
        assert outcome["response"].status_code == 200
        assert len(outcome["response"].json()["response"]) == 128
        _, alive = psutil.wait_procs(family, timeout=15)
        assert alive == [], f"processes left behind: {alive}"
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/", timeout=2)
