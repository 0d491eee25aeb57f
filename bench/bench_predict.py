"""/predict against the raw vLLM engine, side by side in one run.

Same 512 questions from data.jsonl, the same tiny model, the same prompt token
ids and engine settings on every side; prints tokens/s and ratios to raw
``vllm.LLM.generate``. The raw engine runs in a child process so its memory is
back before the server starts.

    .venv/bin/python bench/bench_predict.py [--model DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import Server, stop_on_sigterm, tiny_engine_env  # noqa: E402

N_QUESTIONS = 512
UNIFORM_BUDGET = 128
MIXED_BUDGETS = (32, 64, 128, 192)
CONCURRENCY = 64


def load_questions(n: int) -> list[str]:
    from qaserve.warmup import read_questions

    return read_questions(ROOT / "data.jsonl")[:n]


def mixed_questions(questions: list[str]) -> list[str]:
    """Tag each quarter so a budget rule (and the raw side) gives it its budget."""
    quarter = len(questions) // len(MIXED_BUDGETS)
    return [f"{q} [b{MIXED_BUDGETS[i // quarter]}]" for i, q in enumerate(questions)]


def budget_of(question: str) -> int:
    return int(question.rsplit("[b", 1)[1].rstrip("]"))


def server_env(model: Path) -> dict[str, str]:
    rules = [{"name": f"b{b}", "keywords": [f"[b{b}]"], "max_tokens": b} for b in MIXED_BUDGETS]
    return tiny_engine_env(
        model,
        MAX_NEW_TOKENS=str(UNIFORM_BUDGET),
        BUDGET_RULES=json.dumps(rules),
        MAX_BATCH_SIZE=str(N_QUESTIONS),
        WARMUP_NUM_SAMPLES="16",
    )


@dataclass
class Sample:
    tokens: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


def median_sample(samples: list[Sample]) -> Sample:
    return sorted(samples, key=lambda s: s.rate)[len(samples) // 2]


# ---- raw engine side (child process) ----------------------------------------


def run_raw(repeats: int) -> dict[str, list[dict]]:
    """vllm.LLM.generate with the server's own prompt ids and sampling parameters.

    Runs in a child process whose environment holds the server's settings.
    """
    import dataclasses

    from vllm import LLM, EngineArgs

    from qaserve.engine.vllm_backend import engine_kwargs, vllm_sampling_params
    from qaserve.prompts import PromptBuilder, context_length
    from qaserve.service import Overrides, ParamPlanner
    from qaserve.settings import Settings

    settings = Settings()
    accepted = {f.name for f in dataclasses.fields(EngineArgs)}
    llm = LLM(**engine_kwargs(settings, accepted, None))
    prompts = PromptBuilder.load(
        settings.model_dir,
        context_length(settings.model_dir, settings.max_model_len),
        settings.enable_thinking,
        settings.trust_remote_code,
    )
    planner = ParamPlanner(settings, prompts.context_len)  # as /predict plans each item

    def generate(questions: list[str]) -> Sample:
        params = planner.plan(questions, Overrides())
        ids = prompts.encode_many(settings.system_prompt, questions, [p.max_tokens for p in params])
        started = time.perf_counter()
        outputs = llm.generate(
            [{"prompt_token_ids": i} for i in ids],
            [vllm_sampling_params(p) for p in params],
            use_tqdm=False,
        )
        seconds = time.perf_counter() - started
        return Sample(sum(len(o.outputs[0].token_ids) for o in outputs), seconds)

    uniform = load_questions(N_QUESTIONS)
    mixed = mixed_questions(uniform)
    generate(uniform[:64])  # warm the engine as the server's warmup does
    results: dict[str, list[Sample]] = {
        "raw": [],
        "raw_waves": [],
        "raw_mixed_sequential": [],
        "raw_mixed_one": [],
    }
    for _ in range(repeats):
        results["raw"].append(generate(uniform))
        waves = [generate(uniform[i : i + CONCURRENCY]) for i in range(0, N_QUESTIONS, CONCURRENCY)]
        results["raw_waves"].append(
            Sample(sum(w.tokens for w in waves), sum(w.seconds for w in waves))
        )
        per_budget = [generate([q for q in mixed if budget_of(q) == b]) for b in MIXED_BUDGETS]
        total = Sample(sum(s.tokens for s in per_budget), sum(s.seconds for s in per_budget))
        results["raw_mixed_sequential"].append(total)
        results["raw_mixed_one"].append(generate(mixed))
    return {k: [dataclasses.asdict(s) for s in v] for k, v in results.items()}


# ---- server side --------------------------------------------------------------


async def post_batch(http: httpx.AsyncClient, questions: list[str]) -> Sample:
    started = time.perf_counter()
    response = await http.post("/predict", json={"prompt": questions})
    response.raise_for_status()
    assert len(response.json()["response"]) == len(questions)
    return Sample(int(response.headers["X-Output-Tokens"]), time.perf_counter() - started)


async def post_singles(http: httpx.AsyncClient, questions: list[str]) -> Sample:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(question: str) -> int:
        async with limit:
            response = await http.post("/predict", json={"prompt": question})
            response.raise_for_status()
            return int(response.headers["X-Output-Tokens"])

    started = time.perf_counter()
    tokens = await asyncio.gather(*map(one, questions))
    return Sample(sum(tokens), time.perf_counter() - started)


async def run_server_sides(url: str, repeats: int) -> dict[str, list[Sample]]:
    uniform = load_questions(N_QUESTIONS)
    mixed = mixed_questions(uniform)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def timed(send, questions: list[str]) -> Sample:
        # A fresh client per phase: no keep-alive connection left idle since the last one.
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
            return await send(http, questions)

    await timed(post_batch, uniform[:64])
    results: dict[str, list[Sample]] = {"batch": [], "singles": [], "mixed_batch": []}
    for _ in range(repeats):
        results["batch"].append(await timed(post_batch, uniform))
        results["singles"].append(await timed(post_singles, uniform))
        results["mixed_batch"].append(await timed(post_batch, mixed))
    return results


# ---- report -------------------------------------------------------------------


def report(results: dict[str, list[Sample]]) -> str:
    best = {name: median_sample(samples) for name, samples in results.items()}
    rows = [
        ("1. raw LLM.generate, 512 prompts", "raw", "raw"),
        ("2. /predict, one batch of 512", "batch", "raw"),
        (f"3. /predict, 512 singles at concurrency {CONCURRENCY}", "singles", "raw"),
        (f"   (raw, waves of {CONCURRENCY}: the engine at that concurrency)", "raw_waves", "raw"),
        ("4a. raw, one call per budget, in turn", "raw_mixed_sequential", "raw_mixed_sequential"),
        ("4b. raw, one call with per-item budgets", "raw_mixed_one", "raw_mixed_sequential"),
        ("4c. /predict, one mixed-budget batch", "mixed_batch", "raw_mixed_sequential"),
    ]
    lines = [f"{'side':50} {'tokens':>8} {'seconds':>8} {'tok/s':>8} {'ratio':>7}"]
    for label, key, reference in rows:
        sample = best[key]
        ratio = sample.rate / best[reference].rate
        lines.append(
            f"{label:50} {sample.tokens:>8} {sample.seconds:>8.2f} {sample.rate:>8.0f} "
            f"{ratio:>6.2f}x"
        )
    lines.append("ratios: rows 1-3 to row 1; rows 4a-4c to row 4a (median of the repeats)")
    return "\n".join(lines)


def run_raw_child(env: dict[str, str], repeats: int) -> dict[str, list[Sample]]:
    """The raw side in its own process group, killed whole whatever happens."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--repeats", str(repeats), "--raw-child"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    if child.returncode:
        raise RuntimeError(f"raw engine run failed ({child.returncode}):\n{err[-4000:]}")
    line = next(x for x in out.splitlines() if x.startswith("RAW-RESULTS "))
    return {k: [Sample(**s) for s in v] for k, v in json.loads(line[12:]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raw-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    stop_on_sigterm()

    if args.raw_child:  # child process: run the raw engine, print JSON
        print("RAW-RESULTS " + json.dumps(run_raw(args.repeats)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from tests.tiny_model import build_tiny_model

            model = build_tiny_model(Path(scratch) / "tiny")
        env = server_env(model)
        raw = run_raw_child(env, args.repeats)
        with Server(env, Path(scratch) / "server.log") as server:
            served = asyncio.run(run_server_sides(server.url, args.repeats))
    print(report({**raw, **served}))


if __name__ == "__main__":
    main()
