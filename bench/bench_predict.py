"""/predict against the raw vLLM engine, side by side in one run.

Same 512 questions from data.jsonl, the same tiny model, the same prompt token
ids and engine settings on every side; prints tokens/s and ratios to raw
``vllm.LLM.generate``. The raw engine lives in a child process beside the server
and rounds alternate between them (every other round in reverse order, each phase
on an idle machine), so a slow spell of the machine hits both; each ratio is the
median over rounds of the ratio measured within a round.

    .venv/bin/python -m bench.bench_predict [--model DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from devtools.launcher import OWN_PROCESS_GROUP, ROOT, Server, stop_on_sigterm
from devtools.tiny_model import model_or_tiny, tiny_engine_env

N_QUESTIONS = 512
UNIFORM_BUDGET = 128
MIXED_BUDGETS = (32, 64, 128, 192)
CONCURRENCY = 64


@functools.cache
def load_questions(n: int) -> tuple[str, ...]:
    """Read once per process: every phase of every round asks for the same questions."""
    from prep.datafile import read_questions

    return tuple(read_questions(ROOT / "data.jsonl")[:n])


def mixed_questions(questions: tuple[str, ...]) -> list[str]:
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


# ---- raw engine side (child process) ----------------------------------------

RAW_PHASES = ("raw", "raw_waves", "raw_mixed_sequential", "raw_mixed_one")


def serve_raw_phases() -> None:
    """vllm.LLM.generate with the server's own prompt ids and sampling parameters.

    Runs in a child process whose environment holds the server's settings; reads a
    phase name per line on stdin (or "raw N": the first N questions) and answers each with
    a RAW-RESULT line.
    """
    import dataclasses

    from vllm import LLM, EngineArgs, __version__

    from qaserve.core.answerer import ParamPlanner
    from qaserve.core.length import LengthPolicy
    from qaserve.core.prompts import PromptBuilder, context_length
    from qaserve.core.sampling import configured_params
    from qaserve.engine.vllm_backend import engine_kwargs, vllm_sampling_params
    from qaserve.settings import Settings

    settings = Settings()
    accepted = {f.name for f in dataclasses.fields(EngineArgs)}
    llm = LLM(**engine_kwargs(settings.model, settings.engine, accepted, None, __version__))
    prompts = PromptBuilder.load(
        settings.model_dir,
        context_length(settings.model_dir, settings.max_model_len),
        settings.enable_thinking,
        settings.trust_remote_code,
    )
    generation = settings.generation
    # As /predict plans each item (no LoRA adapter here).
    configured = configured_params(generation, adapter=None)
    planner = ParamPlanner(configured, LengthPolicy(generation), prompts.context_len)

    def generate(questions: list[str]) -> Sample:
        params = planner.plan(questions, {})
        ids = prompts.encode_many(settings.system_prompt, questions, [p.max_tokens for p in params])
        started = time.perf_counter()
        outputs = llm.generate(
            [{"prompt_token_ids": i} for i in ids],
            [vllm_sampling_params(p) for p in params],
            use_tqdm=False,
        )
        seconds = time.perf_counter() - started
        return Sample(sum(len(o.outputs[0].token_ids) for o in outputs), seconds)

    def in_turn(groups: list[list[str]]) -> Sample:
        samples = [generate(g) for g in groups]
        return Sample(sum(s.tokens for s in samples), sum(s.seconds for s in samples))

    uniform = load_questions(N_QUESTIONS)
    mixed = mixed_questions(uniform)
    phases = {
        "warmup": lambda: generate(uniform[:64]),  # as the server's warmup does
        "raw": lambda: generate(uniform),
        "raw_waves": lambda: in_turn(
            [uniform[i : i + CONCURRENCY] for i in range(0, N_QUESTIONS, CONCURRENCY)]
        ),
        "raw_mixed_sequential": lambda: in_turn(
            [[q for q in mixed if budget_of(q) == b] for b in MIXED_BUDGETS]
        ),
        "raw_mixed_one": lambda: generate(mixed),
    }
    print("RAW-READY", flush=True)
    for line in sys.stdin:
        # "raw N": the first N questions alone (bench_frontend's smaller rounds).
        phase, _, count = line.strip().partition(" ")
        sample = generate(uniform[: int(count)]) if count else phases[phase]()
        print("RAW-RESULT " + json.dumps(dataclasses.asdict(sample)), flush=True)


class RawEngine:
    """The child process running ``serve_raw_phases``, in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_predict", "--raw-child"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            **OWN_PROCESS_GROUP,
        )
        try:
            self._expect("RAW-READY")
        except BaseException:
            self.__exit__()
            raise

    def _expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.log.flush()
        tail = Path(self.log.name).read_text()[-4000:]
        raise RuntimeError(f"raw engine exited with {self.proc.wait()}:\n{tail}")

    def run(self, phase: str) -> Sample:
        assert self.proc.stdin is not None
        self.proc.stdin.write(phase + "\n")
        self.proc.stdin.flush()
        return Sample(**json.loads(self._expect("RAW-RESULT ")))

    def __enter__(self) -> RawEngine:
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


# ---- server side --------------------------------------------------------------


async def post_predict(http: aiohttp.ClientSession, url: str, prompt: str | list[str]) -> int:
    """One /predict call; its X-Output-Tokens."""
    async with http.post(url + "/predict", json={"prompt": prompt}) as response:
        response.raise_for_status()
        answer = (await response.json())["response"]
        assert isinstance(answer, str) or len(answer) == len(prompt)
        return int(response.headers["X-Output-Tokens"])


async def post_singles(http: aiohttp.ClientSession, url: str, questions: list[str]) -> int:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(question: str) -> int:
        async with limit:
            return await post_predict(http, url, question)

    return sum(await asyncio.gather(*map(one, questions)))


async def timed_on_server(url: str, phase: str) -> Sample:
    uniform = load_questions(N_QUESTIONS)
    send, questions = {
        "warmup": (post_predict, uniform[:64]),
        "batch": (post_predict, uniform),
        "singles": (post_singles, uniform),
        "mixed_batch": (post_predict, mixed_questions(uniform)),
    }[phase]
    # aiohttp, as vLLM's own serving benchmark uses: httpx's AsyncClient stalls requests on
    # reused pooled connections under concurrency (encode/httpx#3215), which measured the
    # client here, not the server. A fresh session per phase: no idle keep-alive left over.
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        tokens = await send(http, url, questions)
        return Sample(tokens, time.perf_counter() - started)


# The comparisons; a round runs each chosen one, a server phase next to its raw phases.
GROUPS = {
    "batch": ("raw", "batch"),
    "singles": ("raw", "raw_waves", "singles"),
    "mixed": ("raw_mixed_sequential", "raw_mixed_one", "mixed_batch"),
}


def round_of(groups: list[str]) -> tuple[str, ...]:
    phases = [phase for group in groups for phase in GROUPS[group]]
    return tuple(dict.fromkeys(phases))  # "raw" once, where it first appears


def settle(quiet_percent: float = 15, longest: float = 10) -> None:
    """Wait until the machine is idle: vLLM's worker spins on a core for about a second
    after its last step, which would slow whichever side runs next."""
    deadline = time.monotonic() + longest
    while psutil.cpu_percent(interval=0.5) > quiet_percent and time.monotonic() < deadline:
        pass


def measure_alternating(
    raw: RawEngine, server: Server, phases: tuple[str, ...], repeats: int
) -> list[dict[str, Sample]]:
    def run(phase: str) -> Sample:
        settle()
        if phase in RAW_PHASES:
            return raw.run(phase)
        return asyncio.run(timed_on_server(server.url, phase))

    asyncio.run(timed_on_server(server.url, "warmup"))
    raw.run("warmup")
    # Every other round runs backwards, so neither side always goes first.
    orders = [phases, phases[::-1]]
    return [{phase: run(phase) for phase in orders[i % 2]} for i in range(repeats)]


# ---- report -------------------------------------------------------------------


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def report(rounds: list[dict[str, Sample]]) -> str:
    rows = [
        ("1. raw LLM.generate, 512 prompts", "raw", "raw"),
        ("2. /predict, one batch of 512", "batch", "raw"),
        (f"3. /predict, 512 singles at concurrency {CONCURRENCY}", "singles", "raw"),
        (f"   (raw, waves of {CONCURRENCY}: the engine at that concurrency)", "raw_waves", "raw"),
        ("4a. raw, one call per budget, in turn", "raw_mixed_sequential", "raw_mixed_sequential"),
        ("4b. raw, one call with per-item budgets", "raw_mixed_one", "raw_mixed_sequential"),
        ("4c. /predict, one mixed-budget batch", "mixed_batch", "raw_mixed_sequential"),
    ]
    header = f"{'side':58} {'tokens':>7} {'tok/s':>7} {'ratio':>6}  ratio per round"
    lines = [header]
    for label, key, reference in rows:
        if key not in rounds[0]:
            continue
        rates = [r[key].rate for r in rounds]
        ratios = [r[key].rate / r[reference].rate for r in rounds]
        per_round = " ".join(f"{x:.2f}" for x in ratios)
        lines.append(
            f"{label:58} {rounds[0][key].tokens:>7} {median(rates):>7.0f} "
            f"{median(ratios):>5.2f}x  {per_round}"
        )
    lines.append(
        "tok/s: median over rounds; ratio: median over rounds of the ratio within a round "
        "(rows 1-3 to row 1, rows 4a-4c to row 4a)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny model)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(GROUPS),
        default=list(GROUPS),
        help="run these comparisons only (more rounds of one in the same time)",
    )
    parser.add_argument("--raw-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    stop_on_sigterm()

    if args.raw_child:
        serve_raw_phases()
        return

    with tempfile.TemporaryDirectory() as scratch:
        model = model_or_tiny(args.model, Path(scratch))
        env = server_env(model)
        logs = Path(scratch)
        with RawEngine(env, logs / "raw.log") as raw, Server(env, logs / "server.log") as server:
            rounds = measure_alternating(raw, server, round_of(args.only), args.repeats)
    print(report(rounds))


if __name__ == "__main__":
    main()
