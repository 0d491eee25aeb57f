"""Overload: a flood past the admission limit, streamed chats beside a big batch with
priority on and off, and SIGTERM during that mix; on the tiny model, on loopback. Prints a table.

    .venv/bin/python -m bench.overload [--model DIR] [--limit 16] [--rounds 3] [--batch 10000]

Two servers, one after the other, each with VLLM_MAX_NUM_SEQS=--limit:
- "limited": MAX_REQUESTS_IN_FLIGHT=--limit, SCHEDULING_POLICY=priority (MAX_ITEMS_IN_FLIGHT
  admits the batch and the chats: the chats' wait is what this measures); it runs the flood, the
  mix, then takes SIGTERM during the mix (SHUTDOWN_TIMEOUT_SECONDS=--shutdown-timeout);
- "unlimited": no admission limit, SCHEDULING_POLICY=fcfs; the same flood and mix.
(1) flood: --rounds rounds of 4 x --limit single /predict requests at once: answered, 429,
lost (no HTTP answer), 5xx; the admitted requests' latency; the server process's peak RSS.
(2) mix: a /predict batch of --batch items runs; --chats streamed /v1 chats are sent during
it, one every 0.25 s: time to the first generated text (not the role chunk) and to the last.
(3) drain: the mix again, SIGTERM once the chats are sent: every admitted request must end whole
or with an error, the server must exit within the timeout and leave no process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from bench.load import questions
from devtools.launcher import Server, stop_on_sigterm
from devtools.tiny_model import model_or_tiny, tiny_engine_env

FLOOD_TOKENS = 32
CHAT_TOKENS = 32
BATCH_TOKENS = 16
CHAT_SPACING = 0.25
TIMEOUT = aiohttp.ClientTimeout(total=600)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


class PeakRss:
    """The server process's largest resident set while inside the with-block (every 20 ms)."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Flood:
    outcomes: Counter = field(default_factory=Counter)  # "200", "429", "503", "lost", ...
    latencies: list[float] = field(default_factory=list)  # of the answered requests
    peak_rss: int = 0


async def flood(url: str, pid: int, concurrent: int, rounds: int) -> Flood:
    """``rounds`` rounds of ``concurrent`` single /predict requests sent at once."""
    result = Flood()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as http:

        async def one(prompt: str) -> None:
            started = time.perf_counter()
            body = {"prompt": prompt, "max_tokens": FLOOD_TOKENS}
            try:
                async with http.post(url + "/predict", json=body) as reply:
                    answer = await reply.json()
                    status = reply.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                result.outcomes["lost"] += 1
                return
            if status == 200 and isinstance(answer.get("response"), str):
                result.latencies.append(time.perf_counter() - started)
                result.outcomes["answered"] += 1
            else:
                result.outcomes[str(status)] += 1

        with PeakRss(pid) as rss:
            for round_ in range(rounds):
                prompts = [f"{q} r{round_}" for q in questions(concurrent)]
                await asyncio.gather(*map(one, prompts))
        result.peak_rss = rss.peak
    return result


@dataclass
class Chat:
    sent: float
    first: float | None = None  # first chunk with generated text
    last: float | None = None
    finish: str | None = None  # the choice's finish_reason
    error: str | None = None  # an error event, or the HTTP status of a refusal
    done: bool = False  # [DONE] came


async def stream_chat(http: aiohttp.ClientSession, url: str, question: str) -> Chat:
    body = {
        "messages": [{"role": "user", "content": question}],
        "max_tokens": CHAT_TOKENS,
        "stream": True,
    }
    chat = Chat(sent=time.perf_counter())
    try:
        async with http.post(url + "/v1/chat/completions", json=body) as reply:
            if reply.status != 200:
                chat.error = f"HTTP {reply.status}"
                return chat
            async for raw in reply.content:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    chat.done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    chat.error = event["error"]["code"]
                    continue
                for choice in event["choices"]:
                    if choice["delta"].get("content"):
                        chat.last = time.perf_counter()
                        chat.first = chat.first or chat.last
                    chat.finish = choice.get("finish_reason") or chat.finish
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass  # neither [DONE] nor an error: lost
    return chat


@dataclass
class Mix:
    chats: list[Chat]
    batch_status: int | None  # None: no HTTP answer
    batch_answers: int
    batch_seconds: float


async def engine_running(http: aiohttp.ClientSession, url: str) -> None:
    while True:
        async with http.get(url + "/info") as reply:
            if (await reply.json())["engine_stats"]["running"] > 0:
                return
        await asyncio.sleep(0.05)


async def mix(
    url: str, items: int, batch_tokens: int, chats: int, after_chats=None
) -> tuple[Mix, object]:
    """A /predict batch, and streamed chats sent one by one while it runs; ``after_chats``
    (a coroutine function) runs once they are all sent, and its result comes back too."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:

        async def batch() -> tuple[int | None, int, float]:
            started = time.perf_counter()
            body = {"prompt": questions(items), "max_tokens": batch_tokens}
            try:
                async with http.post(url + "/predict", json=body) as reply:
                    answer = await reply.json()
                    count = len(answer.get("response", [])) if reply.status == 200 else 0
                    return reply.status, count, time.perf_counter() - started
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return None, 0, time.perf_counter() - started

        batch_task = asyncio.create_task(batch())
        await engine_running(http, url)
        chat_tasks = []
        for question in questions(chats):
            chat_tasks.append(asyncio.create_task(stream_chat(http, url, question)))
            await asyncio.sleep(CHAT_SPACING)
        extra = await after_chats() if after_chats else None
        status, count, seconds = await batch_task
        return Mix(list(await asyncio.gather(*chat_tasks)), status, count, seconds), extra


def server_env(model: Path, args, limited: bool) -> dict[str, str]:
    return tiny_engine_env(
        model,
        VLLM_MAX_NUM_SEQS=str(args.limit),
        MAX_REQUESTS_IN_FLIGHT=str(args.limit if limited else 0),
        MAX_ITEMS_IN_FLIGHT=str(args.batch + args.chats) if limited else "0",
        MAX_BATCH_SIZE=str(args.batch),
        SCHEDULING_POLICY="priority" if limited else "fcfs",
        SHUTDOWN_TIMEOUT_SECONDS=str(args.shutdown_timeout),
        BUDGET_RULES="[]",  # every answer runs to the budget each request sets
        WARMUP_NUM_SAMPLES="4",
    )


async def late_requests(url: str, count: int) -> Counter:
    """Generating requests sent after SIGTERM, by status."""
    statuses: Counter = Counter()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for prompt in questions(count):
            try:
                async with http.post(url + "/predict", json={"prompt": prompt}) as reply:
                    statuses[f"{reply.status} {reply.headers.get('Connection', '')}"] += 1
            except aiohttp.ClientError:
                statuses["no connection"] += 1
    return statuses


def drain(server: Server, args) -> dict:
    """The mix with SIGTERM once the chats are sent: what became of each admitted request."""
    family = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(True)]
    signalled: dict[str, float] = {}

    async def sigterm_then_late_requests() -> Counter:
        server.proc.send_signal(signal.SIGTERM)
        signalled["at"] = time.perf_counter()
        return await late_requests(server.url, 4)

    result, late = asyncio.run(
        mix(server.url, args.batch, BATCH_TOKENS, args.chats, sigterm_then_late_requests)
    )
    exit_code = server.proc.wait(timeout=args.shutdown_timeout + 60)
    exited = time.perf_counter() - signalled["at"]
    _, alive = psutil.wait_procs(family, timeout=15)
    whole = sum(c.done and c.finish is not None and c.error is None for c in result.chats)
    errors = sum(c.done and c.error is not None for c in result.chats)
    whole += result.batch_status == 200 and result.batch_answers == args.batch
    errors += result.batch_status == 503
    return {
        "admitted": len(result.chats) + 1,
        "whole": whole,
        "error": errors,
        "lost": len(result.chats) + 1 - whole - errors,
        "late": dict(late),
        "exit_code": exit_code,
        "exit_seconds": exited,
        "left": len(alive),
    }


def run_server(model: Path, args, scratch: Path, limited: bool) -> dict:
    name = "limited" if limited else "unlimited"
    env = server_env(model, args, limited)
    with Server(env, scratch / f"{name}.log") as server:
        pid = server.proc.pid
        flooded = asyncio.run(flood(server.url, pid, 4 * args.limit, args.rounds))
        mixed, _ = asyncio.run(mix(server.url, args.batch, BATCH_TOKENS, args.chats))
        drained = drain(server, args) if limited else None
    return {"flood": flooded, "mix": mixed, "drain": drained}


def print_table(columns: dict[str, int], rows: list[list[str]]) -> None:
    """Columns by name and width: the first left-aligned, the others right-aligned."""
    first_width, *widths = columns.values()
    for first, *rest in [list(columns), *rows]:
        print(f"{first:{first_width}}", *(f"{c:>{w}}" for c, w in zip(rest, widths, strict=True)))


def print_tables(args, results: dict[str, dict]) -> None:
    print(
        f"\n(1) flood: {args.rounds} rounds of {4 * args.limit} single /predict requests at once "
        f"({FLOOD_TOKENS} tokens), 4x MAX_REQUESTS_IN_FLIGHT={args.limit}"
    )
    flood_rows = []
    for name, result in results.items():
        f = result["flood"]
        server_errors = sum(n for status, n in f.outcomes.items() if status.startswith("5"))
        flood_rows.append(
            [
                name,
                *(str(n) for n in (f.outcomes["answered"], f.outcomes["429"], f.outcomes["lost"])),
                str(server_errors),
                *(f"{percentile(f.latencies, q):.2f}" for q in (0.5, 0.99)),
                f"{f.peak_rss / 2**20:.0f}",
            ]
        )
    flood_columns = {"server": 10, "answered": 8, "429": 5, "lost": 5, "5xx": 5}
    print_table({**flood_columns, "p50 s": 7, "p99 s": 7, "peak RSS MiB": 13}, flood_rows)
    print(
        f"\n(2) {args.chats} streamed chats ({CHAT_TOKENS} tokens), one every {CHAT_SPACING} s, "
        f"during a /predict batch of {args.batch} x {BATCH_TOKENS} tokens "
        f"(VLLM_MAX_NUM_SEQS={args.limit})"
    )
    mix_rows = []
    for name, result in results.items():
        m = result["mix"]
        firsts = [c.first - c.sent for c in m.chats if c.first]
        lasts = [c.last - c.sent for c in m.chats if c.last]
        mix_rows.append(
            [
                "priority" if name == "limited" else "fcfs",
                *(f"{percentile(times, q):.2f}" for times in (firsts, lasts) for q in (0.5, 0.99)),
                f"{m.batch_seconds:.1f}",
                str(sum(c.done for c in m.chats)),
            ]
        )
    latency_columns = {"first p50": 9, "first p99": 9, "last p50": 9, "last p99": 9}
    print_table({"scheduling": 10, **latency_columns, "batch s": 8, "chats ok": 8}, mix_rows)
    d = results["limited"]["drain"]
    print(
        f"\n(3) SIGTERM during the mix (a {args.batch} x {BATCH_TOKENS}-token batch, "
        f"{args.chats} chats; SHUTDOWN_TIMEOUT_SECONDS={args.shutdown_timeout:g})"
    )
    print(
        f"admitted {d['admitted']}: {d['whole']} whole, {d['error']} answered with an error, "
        f"{d['lost']} lost; sent after SIGTERM: {d['late']}; exit code {d['exit_code']} after "
        f"{d['exit_seconds']:.1f} s; processes left: {d['left']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--limit", type=int, default=16, help="MAX_REQUESTS_IN_FLIGHT")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10_000, help="/predict items in the mix")
    parser.add_argument("--shutdown-timeout", type=float, default=5.0)
    args = parser.parse_args()
    stop_on_sigterm()
    with tempfile.TemporaryDirectory() as scratch:
        model = model_or_tiny(args.model, Path(scratch))
        results = {
            "limited": run_server(model, args, Path(scratch), limited=True),
            "unlimited": run_server(model, args, Path(scratch), limited=False),
        }
    print_tables(args, results)


if __name__ == "__main__":
    main()
