"""The two engine stacks side by side: current vLLM (.venv) and the judge's vLLM 0.10 under
Python 3.10 and torch 2.6 (.venv-judge), on the same machine in one run.

For each stack and each mode (eager, compiled) a server starts on the tiny model, which each
stack's own transformers writes; the bench records the seconds to a healthy ``GET /``, the engine's
own start (``/info`` start attempts) and the warmup, then sends one ``/predict`` batch and counts
its output tokens (``X-Output-Tokens``). Rounds alternate the order of the stacks, so a slow spell
of the machine hits both; the ratio is the median over rounds of the ratio within a round.

    .venv/bin/python -m bench.bench_stacks [--rounds 2] [--questions 512] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from devtools.launcher import ROOT, Server, stop_on_sigterm
from devtools.tiny_model import tiny_engine_env
from prep.datafile import read_questions

MODES = {"eager": "1", "compiled": "0"}  # ENFORCE_EAGER


@dataclass
class Run:
    stack: str
    mode: str
    vllm: str
    enforce_eager_after_start: bool
    seconds_to_healthy: float
    engine_start_seconds: float
    warmup_seconds: float
    batch_seconds: float
    output_tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.batch_seconds


def build_model(python: Path, out: Path) -> Path:
    """The tiny model as the stack's own transformers writes it (0.10 cannot read 5.x's)."""
    subprocess.run([str(python), "-m", "devtools.tiny_model", str(out)], cwd=ROOT, check=True)
    return out


def measure(stack: str, python: Path, model: Path, mode: str, args, logs: Path) -> Run:
    env = tiny_engine_env(
        model,
        ENFORCE_EAGER=MODES[mode],
        MAX_NEW_TOKENS=str(args.max_tokens),
        MAX_BATCH_SIZE=str(args.questions),
        WARMUP_NUM_SAMPLES="16",
    )
    questions = read_questions(ROOT / "data.jsonl")[: args.questions]
    started = time.monotonic()
    log = logs / f"{stack}-{mode}-{time.time_ns()}.log"
    with Server(env, log, python=str(python)) as server, httpx.Client(timeout=900) as http:
        healthy = time.monotonic() - started
        info = http.get(server.url + "/info").json()
        if info["backend"] != "vllm":
            raise SystemExit(f"{stack} served on {info['backend']}: {info['fallback_reason']}")
        batch_started = time.monotonic()
        reply = http.post(server.url + "/predict", json={"prompt": questions})
        batch_seconds = time.monotonic() - batch_started
        reply.raise_for_status()
    return Run(
        stack=stack,
        mode=mode,
        vllm=info["vllm_version"],
        enforce_eager_after_start=info["settings"]["enforce_eager"],
        seconds_to_healthy=healthy,
        engine_start_seconds=info["engine_details"]["start_attempts"][-1]["seconds"],
        warmup_seconds=info["warmup"]["seconds"],
        batch_seconds=batch_seconds,
        output_tokens=int(reply.headers["X-Output-Tokens"]),
    )


def report(runs: list[Run], stacks: list[str]) -> None:
    print(
        f"{'stack':<8} {'vLLM':<12} {'mode':<9} {'eager?':<7} {'healthy s':>9} {'engine s':>9} "
        f"{'warmup s':>9} {'batch s':>8} {'tokens':>7} {'tok/s':>8}"
    )
    for run in runs:
        print(
            f"{run.stack:<8} {run.vllm:<12} {run.mode:<9} {run.enforce_eager_after_start!s:<7} "
            f"{run.seconds_to_healthy:>9.1f} {run.engine_start_seconds:>9.1f} "
            f"{run.warmup_seconds:>9.1f} {run.batch_seconds:>8.2f} {run.output_tokens:>7} "
            f"{run.tokens_per_second:>8.0f}"
        )
    first, second = stacks
    for mode in dict.fromkeys(run.mode for run in runs):
        ratios = [
            b.tokens_per_second / a.tokens_per_second
            for a, b in zip(
                [r for r in runs if r.stack == first and r.mode == mode],
                [r for r in runs if r.stack == second and r.mode == mode],
                strict=True,
            )
        ]
        median = statistics.median(ratios)
        print(
            f"{mode}: /predict batch tok/s {second} / {first}: median {median:.2f}"
            f" over {len(ratios)} rounds ({', '.join(f'{r:.2f}' for r in ratios)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--current", type=Path, default=ROOT / ".venv/bin/python")
    parser.add_argument("--judge", type=Path, default=ROOT / ".venv-judge/bin/python")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--questions", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()
    stop_on_sigterm()
    pythons = {"current": args.current, "judge": args.judge}
    with tempfile.TemporaryDirectory(prefix="bench-stacks-") as scratch:
        scratch = Path(scratch)
        models = {name: build_model(py, scratch / f"tiny-{name}") for name, py in pythons.items()}
        runs: list[Run] = []
        for mode in args.modes:
            for round_number in range(args.rounds):
                order = list(pythons) if round_number % 2 == 0 else list(pythons)[::-1]
                for name in order:
                    runs.append(measure(name, pythons[name], models[name], mode, args, scratch))
                    print(f"{name} {mode} round {round_number + 1}: {runs[-1]}", flush=True)
    runs.sort(key=lambda run: (list(MODES).index(run.mode), run.stack))
    report(runs, list(pythons))


if __name__ == "__main__":
    main()
