"""Tensor parallel 2 on the real CPU engine: the server binds each worker to a core itself."""

import signal
import time

import httpx
import psutil
import pytest

from devtools.launcher import Server
from devtools.tiny_model import tiny_engine_env
from tests.engine_side import engine_workers

pytestmark = pytest.mark.judge_stack  # engine-facing: run on vLLM 0.10 too


def test_tensor_parallel_2_answers_in_order_and_leaves_no_process(tiny_model, tmp_path):
    env = tiny_engine_env(tiny_model, TENSOR_PARALLEL_SIZE="2")
    started = time.monotonic()
    with Server(env, tmp_path / "server.log") as server:
        ready = time.monotonic() - started
        http = httpx.Client(base_url=server.url, timeout=300)
        info = http.get("/info").json()
        assert info["backend"] == "vllm", info["fallback_reason"]
        layout = info["engine_details"]["parallel"]
        assert layout["tensor_parallel_size"] == 2
        assert layout["cpu_threads_bind"].count("|") == 1  # one core group per worker
        workers = engine_workers(server)
        assert len(workers) == 2, workers

        # Few and short: every step of TP=2 on the CPU crosses a gloo all-reduce per layer.
        prompts = [f"什么是warp？#{i}" for i in range(8)]
        budget = {"max_tokens": 48}
        batch = http.post("/predict", json={"prompt": prompts, **budget}).json()["response"]
        alone = [
            http.post("/predict", json={"prompt": p, **budget}).json()["response"] for p in prompts
        ]
        assert batch == alone and len(set(batch)) > 1

        family = psutil.Process(server.proc.pid).children(recursive=True)
        assert server.terminate(timeout=120) in (0, -signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=15)
        assert alive == [], f"processes left behind: {alive}"
        print(f"\nTP=2: ready in {ready:.0f} s, layout {layout}")
