"""The server's own CPU per output token, beside raw vLLM and vLLM's OpenAI server, in one run.

On a GPU the engine is a hundred times faster than here and the process in front of it (its
tokenizing, detokenizing, request bookkeeping, HTTP) becomes the limit. This benchmark
measures that process apart from the engine's: for each path it counts the CPU seconds (user
plus system) of the front-end process and, apart, of its engine processes, over the same 512
questions from data.jsonl at the same budget:

- raw ``vllm.LLM.generate`` on the server's own prompt ids and sampling (bench_predict's child);
- this server: ``/predict`` as one batch, ``/predict`` singles, ``/v1`` chat (plain and
  streamed), the requests at the same concurrency;
- vLLM's own OpenAI server: ``/v1`` chat, plain and streamed.

Each side runs in its own process tree on the same tiny model and engine settings; phases
alternate over rounds, each on an idle machine. Prints, per path: output tokens, wall
seconds, front-end CPU µs per output token and per request, engine CPU µs per token, and the
front end's ceiling (output tokens/s one core of front end can carry), then the ratios the
README quotes.

    .venv/bin/python -m bench.bench_frontend [--model DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.bench_chat import vllm_server_argv
from bench.bench_predict import (
    CONCURRENCY,
    N_QUESTIONS,
    UNIFORM_BUDGET,
    RawEngine,
    load_questions,
    server_env,
    settle,
)
from devtools.launcher import Server, stop_on_sigterm
from devtools.tiny_model import model_or_tiny


@dataclass
class Cost:
    tokens: int
    requests: int
    wall: float
    front_cpu: float  # seconds of the front-end process
    engine_cpu: float  # seconds of its engine processes, together

    def per_token_us(self, seconds: float) -> float:
        return seconds / self.tokens * 1e6


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def tree_cpu(root: psutil.Process) -> tuple[float, float]:
    """CPU seconds of ``root`` and of its descendants (the engine), so far."""
    engine = 0.0
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # gone meanwhile
            engine += cpu_seconds(child)
    return cpu_seconds(root), engine


# ---- the requests ---------------------------------------------------------------------


def chat_body(question: str, stream: bool, thinking_off: dict) -> dict:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": UNIFORM_BUDGET,
        "temperature": 0,
        **thinking_off,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def chat_tokens(http: aiohttp.ClientSession, url: str, body: dict) -> int:
    async with http.post(url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        if not body.get("stream"):
            return (await response.json())["usage"]["completion_tokens"]
        tokens = 0
        async for line in response.content:
            data = line.decode().strip().removeprefix("data: ")
            if data and data != "[DONE]":
                usage = json.loads(data).get("usage")
                tokens = usage["completion_tokens"] if usage else tokens
        return tokens


async def predict_tokens(http: aiohttp.ClientSession, url: str, prompt) -> int:
    async with http.post(url + "/predict", json={"prompt": prompt}) as response:
        response.raise_for_status()
        await response.read()
        return int(response.headers["X-Output-Tokens"])


async def send(url: str, kind: str, questions: list[str], thinking_off: dict) -> tuple[int, int]:
    """Output tokens and requests of one phase."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:
        if kind == "batch":
            return await predict_tokens(http, url, questions), 1
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(question: str) -> int:
            async with limit:
                if kind == "singles":
                    return await predict_tokens(http, url, question)
                body = chat_body(question, kind == "chat_stream", thinking_off)
                return await chat_tokens(http, url, body)

        return sum(await asyncio.gather(*map(one, questions))), len(questions)


# ---- the sides ------------------------------------------------------------------------

# Path name -> (side, request kind).
PATHS = {
    "raw LLM.generate, one call": ("raw", "batch"),
    "/predict, one batch": ("ours", "batch"),
    f"/predict, singles at concurrency {CONCURRENCY}": ("ours", "singles"),
    f"/v1 chat at concurrency {CONCURRENCY}": ("ours", "chat"),
    f"/v1 chat streamed at concurrency {CONCURRENCY}": ("ours", "chat_stream"),
    f"vLLM server /v1 chat at concurrency {CONCURRENCY}": ("vllm", "chat"),
    f"vLLM server /v1 chat streamed at concurrency {CONCURRENCY}": ("vllm", "chat_stream"),
}
THINKING_OFF = {
    "ours": {"mode": "fast"},
    "vllm": {"chat_template_kwargs": {"enable_thinking": False}},
}


def measure(sides: dict, path: str, n_questions: int) -> Cost:
    side, kind = PATHS[path]
    questions = list(load_questions(n_questions))
    settle()
    process = psutil.Process(sides[side].proc.pid)
    front_before, engine_before = tree_cpu(process)
    started = time.perf_counter()
    if side == "raw":
        sample = sides["raw"].run(f"raw {n_questions}")
        tokens, requests = sample.tokens, 1
    else:
        tokens, requests = asyncio.run(send(sides[side].url, kind, questions, THINKING_OFF[side]))
    wall = time.perf_counter() - started
    front_after, engine_after = tree_cpu(process)
    return Cost(tokens, requests, wall, front_after - front_before, engine_after - engine_before)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def report(rounds: list[dict[str, Cost]]) -> str:
    raw_path, batch_path, singles_path = list(PATHS)[:3]
    vllm_chat = f"vLLM server /v1 chat at concurrency {CONCURRENCY}"

    def front_us(path: str, per: str = "token") -> float:
        values = [
            c.front_cpu / (c.tokens if per == "token" else c.requests) * 1e6
            for c in (r[path] for r in rounds)
        ]
        return median(values)

    header = (
        f"{'path':52} {'tokens':>7} {'wall s':>7} {'front µs/tok':>12} {'front µs/req':>12} "
        f"{'engine µs/tok':>13} {'ceiling tok/s/core':>18}"
    )
    lines = [header]
    for path in PATHS:
        costs = [r[path] for r in rounds]
        per_token = front_us(path)
        lines.append(
            f"{path:52} {costs[0].tokens:>7} {median([c.wall for c in costs]):>7.2f} "
            f"{per_token:>12.1f} {front_us(path, 'request'):>12.0f} "
            f"{median([c.per_token_us(c.engine_cpu) for c in costs]):>13.1f} "
            f"{1e6 / per_token:>18.0f}"
        )

    def ratio(path: str, reference: str, per: str) -> str:
        within = [
            (r[path].front_cpu / getattr(r[path], per))
            / (r[reference].front_cpu / getattr(r[reference], per))
            for r in rounds
        ]
        return f"{median(within):.2f}x (rounds: {' '.join(f'{x:.2f}' for x in within)})"

    lines += [
        "front µs: CPU of the process in front of the engine; engine: its engine processes; "
        "ceiling: 1e6 / front µs per token. Medians over rounds.",
        f"/predict batch front-end CPU per output token / raw LLM.generate's: "
        f"{ratio(batch_path, raw_path, 'tokens')}",
        f"/predict single front-end CPU per request / vLLM server chat's: "
        f"{ratio(singles_path, vllm_chat, 'requests')}",
        f"/v1 chat front-end CPU per request / vLLM server chat's: "
        f"{ratio(f'/v1 chat at concurrency {CONCURRENCY}', vllm_chat, 'requests')}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=N_QUESTIONS, help="per path and round")
    args = parser.parse_args()
    stop_on_sigterm()

    with tempfile.TemporaryDirectory() as scratch:
        logs = Path(scratch)
        model = model_or_tiny(args.model, logs)
        env = {**server_env(model), "SERVED_MODEL_NAME": "bench", "WARMUP_NUM_SAMPLES": "64"}
        vllm_env = {**env, "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "75"}
        vllm_side = Server(
            vllm_env, logs / "vllm.log", argv=vllm_server_argv(env), ready_path="/health"
        )
        with (
            RawEngine(env, logs / "raw.log") as raw,
            Server(env, logs / "ours.log") as ours,
            vllm_side,
        ):
            sides = {"raw": raw, "ours": ours, "vllm": vllm_side}
            asyncio.run(send(vllm_side.url, "chat", list(load_questions(64)), THINKING_OFF["vllm"]))
            raw.run("warmup")
            paths = list(PATHS)
            rounds = []
            for i in range(args.repeats):
                # Every other round runs backwards, so no path always runs first.
                order = paths if i % 2 == 0 else paths[::-1]
                rounds.append({path: measure(sides, path, args.questions) for path in order})
                print(
                    f"{args.questions} questions from data.jsonl, {UNIFORM_BUDGET}-token "
                    f"budgets, {len(rounds)} of {args.repeats} rounds",
                    flush=True,
                )
                print(report(rounds), flush=True)


if __name__ == "__main__":
    main()
