"""Load: thousands of single /predict requests in flight at once, then one huge batch.
Every answer must come back; prints the times.

    .venv/bin/python -m bench.load [--model DIR] [--singles 2000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from devtools.launcher import ROOT, Server, stop_on_sigterm
from devtools.tiny_model import model_or_tiny, tiny_engine_env
from prep.datafile import read_questions

MAX_TOKENS = 16


def questions(count: int) -> list[str]:
    pool = read_questions(ROOT / "data.jsonl")
    return [f"{pool[i % len(pool)]} #{i}" for i in range(count)]


async def singles(url: str, prompts: list[str]) -> tuple[int, float, list[float]]:
    """All at once, one connection each: (answers present, seconds, latencies)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(prompt: str) -> tuple[bool, float]:
            started = time.perf_counter()
            async with http.post(f"{url}/predict", json={"prompt": prompt}) as reply:
                body = await reply.json() if reply.status == 200 else {}
            answered = isinstance(body.get("response"), str)
            return answered, time.perf_counter() - started

        started = time.perf_counter()
        results = await asyncio.gather(*map(one, prompts))
        seconds = time.perf_counter() - started
    return sum(ok for ok, _ in results), seconds, [latency for _, latency in results]


async def batch(url: str, prompts: list[str]) -> tuple[int, float, int]:
    """One request: (answers present, seconds, output tokens)."""
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        started = time.perf_counter()
        async with http.post(f"{url}/predict", json={"prompt": prompts}) as reply:
            body = await reply.json()
            tokens = int(reply.headers.get("X-Output-Tokens", 0))
        seconds = time.perf_counter() - started
    answers = body.get("response", [])
    return sum(isinstance(a, str) for a in answers), seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    stop_on_sigterm()
    with tempfile.TemporaryDirectory() as scratch:
        model = model_or_tiny(args.model, Path(scratch))
        env = tiny_engine_env(
            model,
            MAX_NEW_TOKENS=str(MAX_TOKENS),
            MAX_BATCH_SIZE=str(max(args.batch, 1)),
            # No admission limit: every request is taken at once, however many.
            MAX_REQUESTS_IN_FLIGHT="0",
            MAX_ITEMS_IN_FLIGHT="0",
        )
        with Server(env, Path(scratch) / "server.log") as server:
            got, seconds, latencies = asyncio.run(singles(server.url, questions(args.singles)))
            p50, p99 = (statistics.quantiles(latencies, n=100)[i] for i in (49, 98))
            print(
                f"{args.singles} single requests at once: {got}/{args.singles} answered in "
                f"{seconds:.1f} s (latency p50 {p50:.1f} s, p99 {p99:.1f} s)"
            )
            got, seconds, tokens = asyncio.run(batch(server.url, questions(args.batch)))
            print(
                f"one batch of {args.batch}: {got}/{args.batch} answered in {seconds:.1f} s "
                f"({tokens} tokens, {tokens / seconds:.0f} tok/s)"
            )


if __name__ == "__main__":
    main()
