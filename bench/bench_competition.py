"""The competition kit's two costs and gains, measured side by side in one run.

1. The deadline guard: one 512-question batch on a server with PREDICT_DEADLINE_SECONDS
   far away against the same batch on a server without it, rounds alternating between the
   two servers; the ratio is the median of the per-round ratios (target >= 0.97).
2. Warmup: the first batch after start (tokens/s) on a server warmed the general way (8
   questions at their own budgets) against one warmed the competition way (every question of
   data.jsonl at 8 tokens, twice), each started fresh, with compilation on (as in the image).

    .venv/bin/python -m bench.bench_competition [--model DIR] [--repeats 5] [--only guard|warmup]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import httpx

from bench.bench_predict import N_QUESTIONS, Sample, median, settle, timed_on_server
from bench.bench_predict import UNIFORM_BUDGET as BUDGET
from devtools.launcher import Server, stop_on_sigterm
from devtools.tiny_model import model_or_tiny, tiny_engine_env

GUARD_FAR_AWAY = "3600"  # seconds: the guard is on but never reached


def timed(url: str, phase: str) -> Sample:
    """bench_predict's phase on this server: "warmup" (64 questions) or "batch" (512)."""
    return asyncio.run(timed_on_server(url, phase))


def guard_overhead(model: Path, logs: Path, repeats: int) -> str:
    common = {"MAX_NEW_TOKENS": str(BUDGET), "BUDGET_RULES": "[]", "WARMUP_NUM_SAMPLES": "16"}
    off = tiny_engine_env(model, **common)
    on = tiny_engine_env(model, **common, PREDICT_DEADLINE_SECONDS=GUARD_FAR_AWAY)
    with Server(off, logs / "guard-off.log") as plain, Server(on, logs / "guard-on.log") as guarded:
        for server in (plain, guarded):
            timed(server.url, "warmup")
        ratios, rates = [], {"off": [], "on": []}
        for round_number in range(repeats):
            order = [("off", plain), ("on", guarded)]
            samples = {}
            for name, server in order if round_number % 2 == 0 else order[::-1]:
                settle()
                samples[name] = timed(server.url, "batch")
                rates[name].append(samples[name].rate)
            ratios.append(samples["on"].rate / samples["off"].rate)
    per_round = " ".join(f"{r:.3f}" for r in ratios)
    return (
        f"deadline guard, one batch of {N_QUESTIONS} at {BUDGET} tokens, {repeats} rounds:\n"
        f"  guard off {median(rates['off']):.0f} tok/s, guard on {median(rates['on']):.0f} tok/s"
        f" -> on/off {median(ratios):.3f}x (per round: {per_round})"
    )


WARMUPS = {
    "general (8 questions, own budgets, 1 pass)": {"WARMUP_NUM_SAMPLES": "8"},
    "competition (all questions, 8 tokens, 2 passes)": {
        "WARMUP_NUM_SAMPLES": "4096",
        "WARMUP_MAX_TOKENS": "8",
        "WARMUP_REPEAT": "2",
    },
}


def first_batch(model: Path, logs: Path, repeats: int) -> str:
    lines = [f"first batch after start ({N_QUESTIONS} questions at {BUDGET} tokens, compiled):"]
    results: dict[str, list[float]] = {name: [] for name in WARMUPS}
    for attempt in range(repeats):
        for index, (name, warmup) in enumerate(WARMUPS.items()):
            env = tiny_engine_env(
                model,
                ENFORCE_EAGER="0",
                MAX_NEW_TOKENS=str(BUDGET),
                BUDGET_RULES="[]",
                **warmup,
            )
            settle()
            with Server(env, logs / f"warmup-{attempt}-{index}.log") as server:
                report = httpx.get(server.url + "/info").json()["warmup"]
                sample = timed(server.url, "batch")
            results[name].append(sample.rate)
            lines.append(
                f"  {name}: warmup {report['seconds']:.1f} s, first batch {sample.rate:.0f} tok/s"
            )
    for name, rates in results.items():
        lines.append(f"  median, {name}: {median(rates):.0f} tok/s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["guard", "warmup"])
    args = parser.parse_args()
    stop_on_sigterm()
    with tempfile.TemporaryDirectory() as scratch:
        model = model_or_tiny(args.model, Path(scratch))
        logs = Path(scratch)
        if args.only in (None, "guard"):
            print(guard_overhead(model, logs, args.repeats), flush=True)
        if args.only in (None, "warmup"):
            print(first_batch(model, logs, max(1, args.repeats // 2)), flush=True)


if __name__ == "__main__":
    main()
