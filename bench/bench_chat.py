"""/v1/chat/completions: this server against vLLM's own OpenAI server, in one run.

512 chat requests (questions from data.jsonl) at concurrency 64, both servers up
at once and rounds alternating between them, on the same tiny model with the same
engine settings and prompts (thinking off on both); prints the median round's
tokens/s, p50/p99 latency, and the ratio.

    .venv/bin/python -m bench.bench_chat [--model DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from devtools.launcher import ROOT, Server, stop_on_sigterm
from devtools.tiny_model import model_or_tiny, tiny_engine_env

N_REQUESTS = 512
CONCURRENCY = 64
MAX_TOKENS = 128


def vllm_server_argv(env: dict[str, str]) -> list[str]:
    """vLLM's OpenAI server with the engine settings our server reads from ``env``."""
    return [
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--model",
        env["MODEL_DIR"],
        "--served-model-name",
        "bench",
        "--dtype",
        env["DTYPE"],
        "--max-model-len",
        env["MAX_MODEL_LEN"],
        "--gpu-memory-utilization",
        env["GPU_MEMORY_UTILIZATION"],
        "--max-num-seqs",
        env["VLLM_MAX_NUM_SEQS"],
        "--max-num-batched-tokens",
        env["VLLM_MAX_NUM_BATCHED_TOKENS"],
        "--enable-prefix-caching",
        "--enforce-eager",
        "--disable-log-stats",  # as ours runs by default (LOG_ENGINE_STATS=false)
        "--seed",
        "0",
    ]


@dataclass
class Run:
    tokens: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_chats(url: str, questions: list[str], thinking_off: dict) -> Run:
    limit = asyncio.Semaphore(CONCURRENCY)
    # aiohttp, as vLLM's serving benchmark uses: httpx's AsyncClient stalls requests on
    # reused pooled connections under concurrency (encode/httpx#3215).
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(question: str) -> tuple[int, float]:
            body = {
                "model": "bench",
                "messages": [{"role": "user", "content": question}],
                "max_tokens": MAX_TOKENS,
                "temperature": 0,
                **thinking_off,
            }
            async with limit:
                started = time.perf_counter()
                async with http.post(url + "/v1/chat/completions", json=body) as response:
                    response.raise_for_status()
                    usage = (await response.json())["usage"]
                return usage["completion_tokens"], time.perf_counter() - started

        started = time.perf_counter()
        results = await asyncio.gather(*map(one, questions))
        wall = time.perf_counter() - started
    return Run(sum(t for t, _ in results), wall, [s for _, s in results])


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def measure_alternating(sides: dict[str, tuple[Server, dict]], questions, repeats) -> dict:
    """Rounds alternate between the servers, so a slow spell of the machine hits both alike."""
    for server, thinking_off in sides.values():
        asyncio.run(run_chats(server.url, questions[:64], thinking_off))  # warm up
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, (server, thinking_off) in sides.items():
            runs[name].append(asyncio.run(run_chats(server.url, questions, thinking_off)))
    return {name: median_run(r) for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stop_on_sigterm()

    from prep.datafile import read_questions

    questions = read_questions(ROOT / "data.jsonl")[:N_REQUESTS]
    with tempfile.TemporaryDirectory() as scratch:
        model = model_or_tiny(args.model, Path(scratch))
        env = tiny_engine_env(model, SERVED_MODEL_NAME="bench", WARMUP_NUM_SAMPLES="8")
        logs = Path(scratch)
        # The same keep-alive as ours (KEEP_ALIVE_SECONDS), so neither drops pooled connections.
        vllm_env = {**env, "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "75"}
        vllm_side = Server(
            vllm_env, logs / "vllm.log", argv=vllm_server_argv(env), ready_path="/health"
        )
        with Server(env, logs / "ours.log") as ours, vllm_side:
            off = {"chat_template_kwargs": {"enable_thinking": False}}
            sides = {
                "qaserve /v1": (ours, {"mode": "fast"}),
                "vllm api_server /v1": (vllm_side, off),
            }
            results = measure_alternating(sides, questions, args.repeats)
        mine, theirs = results["qaserve /v1"], results["vllm api_server /v1"]

    print(f"{N_REQUESTS} chat requests at concurrency {CONCURRENCY}, max_tokens {MAX_TOKENS}")
    print(f"{'server':28} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'p50 s':>7} {'p99 s':>7}")
    for name, run in (("qaserve /v1", mine), ("vllm api_server /v1", theirs)):
        print(
            f"{name:28} {run.tokens:>7} {run.seconds:>8.2f} {run.rate:>7.0f} "
            f"{run.percentile(0.5):>7.3f} {run.percentile(0.99):>7.3f}"
        )
    print(f"ratio qaserve / vllm: {mine.rate / theirs.rate:.2f}x tokens/s")


if __name__ == "__main__":
    main()
