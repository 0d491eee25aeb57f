"""``python -m eval.tune``: sweep length and engine settings against accuracy and throughput.

Runs every trial of the grid (and the data-driven budget proposals) --repeats times on the
server, restarting it (--launch) only when a trial's start settings differ, keeps every run
in a resumable jsonl log, ranks the trials by their median tokens/s (wall) with the spread
of their runs, prints the Pareto front of official score against tokens/s, and writes the
fastest trial that meets --min-official as an env file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from devtools.launcher import Server
from eval.budgets import proposal_table, propose, proposed_trial, reference_lengths
from eval.cli import BELOW_THRESHOLD, FAILED, add_server_arguments, load_items
from eval.client import ServerClient
from eval.errors import EvalError
from eval.readers import Item
from eval.report import table
from eval.results import build_evaluation
from eval.tokens import TokenCounter, tokenizer_folder
from eval.trials import (
    EngineArgKnob,
    Knobs,
    ServerSettings,
    StartKnob,
    Trial,
    env_lines,
    grid,
    parse_engine_arg_knob,
    parse_start_knob,
    plan_requests,
    prompt_variants,
    runs_on,
    setting_value,
    start_env,
    start_grid,
)
from eval.tunelog import TrialLog, signature

RESULT_HEADERS = [
    "official",
    "cjk",
    "tok/s wall",
    "min",
    "max",
    "tok/s server",
    "mean answer tok",
    "runs",
]


def _list_of(kind):
    """An argparse type for comma-separated values; "none" is the empty list."""

    def parse(text: str) -> list:
        if text.strip().lower() == "none":
            return []
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = f"list of {kind.__name__}"  # argparse names the type in its errors
    return parse


def _flag(text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise ValueError(f"{text!r} is not 0 or 1")
    return text.strip() == "1"


def _start_knob(spec: str) -> StartKnob:
    try:
        return parse_start_knob(spec)
    except EvalError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _engine_arg_knob(spec: str) -> EngineArgKnob:
    try:
        return parse_engine_arg_knob(spec)
    except EvalError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.tune", description=__doc__.split("\n\n")[1])
    add_server_arguments(p)
    p.add_argument(
        "--launch",
        action="store_true",
        help="start the server here (settings from this environment) and restart it for "
        "knobs that need a start, instead of using --url",
    )
    p.add_argument(
        "--budgets", type=_list_of(int), default=[64, 128, 192, 256], help="default budgets"
    )
    p.add_argument(
        "--rule-budget",
        action="append",
        default=[],
        metavar="NAME=T1,T2",
        help="budgets to sweep for one budget rule (repeatable; default: the rule's own)",
    )
    p.add_argument("--sentences", type=_list_of(int), default=[0, 2, 3], help="sentence caps")
    p.add_argument(
        "--trim-examples", type=_list_of(_flag), default=[False, True], help="0,1: off, on"
    )
    p.add_argument(
        "--system-prompts",
        type=_list_of(str),
        default=["server"],
        help="variants: server (the server's own), brief, none",
    )
    p.add_argument(
        "--engine",
        type=_start_knob,
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a setting the server reads at start, e.g. VLLM_MAX_NUM_SEQS=128,256 (repeatable; "
        "needs --launch unless the server at --url runs the one value given)",
    )
    p.add_argument(
        "--engine-arg",
        type=_engine_arg_knob,
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a VLLM_ENGINE_ARGS entry to sweep, its values JSON separated by commas (a comma "
        "inside an object or list belongs to it), e.g. async_scheduling=true,false or "
        '\'compilation_config={"level":3},{"level":0}\' (repeatable; each trial\'s server '
        "gets the environment's VLLM_ENGINE_ARGS with these entries merged in)",
    )
    p.add_argument(
        "--repeats", type=_positive, default=3, help="runs per trial; ranked by the median"
    )
    p.add_argument(
        "--propose-budgets",
        type=_list_of(float),
        default=[90.0, 95.0],
        metavar="PERCENTILES",
        help="data-driven budget trials at these percentiles of reference lengths; none: off",
    )
    p.add_argument("--max-trials", type=int, default=0, help="run only the first N (0: all)")
    p.add_argument("--log", default="tune-out/trials.jsonl", help="trial log (resumed)")
    p.add_argument("--env-out", default="tune-out/best.env", help="best setting as env file")
    return p


@contextmanager
def launched_server(
    env: dict[str, str], log: Path, wait: float, api_key: str | None
) -> Iterator[ServerClient]:
    """This repository's server started here (the tests' harness: own process group, SIGTERM
    then SIGKILL on exit), with this environment's settings plus ``env``."""
    server = Server(env, log)
    try:
        try:
            server.start(timeout=wait)
        except (RuntimeError, TimeoutError) as exc:
            raise EvalError(f"the tuner's server did not start: {exc}") from exc
        yield ServerClient(server.url, api_key)
    finally:
        server.__exit__(None, None, None)


class ServerSession:
    """The server the trials run on: --url as it is, or one started (and restarted) here."""

    def __init__(self, args: argparse.Namespace, first_env: dict[str, str]):
        self.args = args
        self.first_env = first_env  # --launch: the first trials' start settings
        self.servers = ExitStack()
        self.server = ServerClient(args.url, args.api_key)
        self.started: dict[str, str] | None = None  # --launch: the running server's settings
        self.starts = 0
        self.info: dict = {}
        self.settings: ServerSettings
        self.prompt = ""

    def __enter__(self) -> ServerSession:
        if self.args.launch:
            self._start(self.first_env)
        else:
            self.server.wait_ready(self.args.wait)
            self._read_settings()
        self.original_prompt = self.prompt
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not self.args.launch and self.prompt != self.original_prompt:
                self.use_prompt(self.original_prompt)
        finally:
            self.servers.close()

    def _start(self, env: dict[str, str]) -> None:
        self.servers.close()
        self.starts += 1
        log = Path(self.args.log).parent / f"server-{self.starts}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"starting a server with {env or 'the environment as it is'} (log: {log})")
        launched = launched_server(env, log, self.args.wait, self.args.api_key)
        self.server = self.servers.enter_context(launched)
        self.started = env
        self._read_settings()
        changed = self.settings.differences(tuple(env.items()))
        if changed:
            # The server's start ladder gave up a setting to start (see its log).
            print(f"note: the server does not run {', '.join(changed)}; see /info")

    def _read_settings(self) -> None:
        self.info = self.server.get_json("/info") or {}
        self.settings = ServerSettings.from_info(self.info)
        self.prompt = self.settings.system_prompt

    def use_prompt(self, text: str) -> None:
        self.server.post_json("/system_prompt", {"system_prompt": text})
        self.prompt = text

    def check_all_run_here(self, trials: list[Trial]) -> None:
        """With --url every trial must suit the running server: say so before any runs."""
        if self.args.launch:
            return
        for trial in trials:
            need = runs_on(trial, self.settings)
            if need:
                raise EvalError(
                    f"trial {trial.label()} needs a server started with {need}; the one at "
                    f"{self.server.url} runs otherwise (use --launch, or sweep it elsewhere)"
                )

    def ready_for(self, trial: Trial, system_prompt: str) -> ServerClient:
        """The server set up for the trial, restarting one (--launch) if it must."""
        if self.args.launch and start_env(trial.start) != self.started:
            self._start(start_env(trial.start))
        if system_prompt != self.prompt:
            self.use_prompt(system_prompt)
        return self.server

    def running(self, trial: Trial) -> dict:
        """The trial's start settings as this server runs them (GET /info)."""
        return {name: self.settings.values.get(name.lower()) for name, _ in trial.start}


def rule_budget_lists(specs: list[str], settings: ServerSettings) -> dict[str, list[int]]:
    """Each budget rule's values to sweep: from --rule-budget NAME=T1,T2, else its own."""
    lists = {rule.name: [rule.max_tokens] for rule in settings.budget_rules}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in lists:
            raise EvalError(
                f"--rule-budget {spec}: the server has no rule {name!r} ({list(lists)})"
            )
        try:
            lists[name] = [int(value) for value in values.split(",")]
        except ValueError as exc:
            raise EvalError(f"--rule-budget {spec}: expected NAME=T1,T2 with integers") from exc
    return lists


def check_arguments(args: argparse.Namespace) -> None:
    """What can be refused before any server starts."""
    unknown = set(args.system_prompts) - set(prompt_variants(""))
    if unknown:
        raise EvalError(f"--system-prompts: unknown {sorted(unknown)}; use server, brief, none")
    for option, knobs in (("--engine", args.engine), ("--engine-arg", args.engine_arg)):
        names = [name for name, _ in knobs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise EvalError(f"{option}: {', '.join(repeated)} given more than once")


def environment_engine_args() -> dict:
    """VLLM_ENGINE_ARGS as a server started here reads it (it inherits this environment):
    what the --engine-arg entries merge onto."""
    try:
        return setting_value("VLLM_ENGINE_ARGS", os.environ.get("VLLM_ENGINE_ARGS", ""))
    except ValidationError as exc:
        raise EvalError(f"this environment's {exc.errors()[0]['msg']}") from exc


def sweep(args, settings: ServerSettings, items: list[Item], counter: TokenCounter) -> list[Trial]:
    knobs = Knobs(
        budgets=args.budgets,
        rule_budgets=rule_budget_lists(args.rule_budget, settings),
        sentences=args.sentences,
        trim_examples=args.trim_examples,
        system_prompts=args.system_prompts,
        start=args.engine,
        engine_args=args.engine_arg,
        base_engine_args=environment_engine_args(),
    )
    trials = grid(knobs)
    if not trials:
        raise EvalError("the grid is empty: every swept knob needs at least one value")
    if args.propose_budgets:
        lengths = reference_lengths(items, settings.budget_rules, counter)
        print("data-driven budgets (reference answer tokens per question class):")
        print(proposal_table(lengths, args.propose_budgets) + "\n")
        base = trials[0]
        trials += [proposed_trial(base, propose(lengths, p), p) for p in args.propose_budgets]
    return trials[: args.max_trials] if args.max_trials > 0 else trials


@dataclass(frozen=True)
class Outcome:
    """A trial and its runs: medians decide, the runs' range shows the spread."""

    number: int
    trial: Trial
    runs: list[dict]  # the trial's lines in the log

    def median(self, field: str) -> float | None:
        values = [run[field] for run in self.runs if run.get(field) is not None]
        return statistics.median(values) if values else None

    @property
    def official(self) -> float:
        return self.median("official")

    @property
    def speed(self) -> float:
        return self.median("tokens_per_s_wall")

    @property
    def speed_range(self) -> tuple[float, float]:
        speeds = [run["tokens_per_s_wall"] for run in self.runs]
        return min(speeds), max(speeds)

    def row(self) -> list:
        return [
            self.number,
            self.trial.source,
            self.trial.label(),
            self.official,
            self.median("cjk"),
            self.speed,
            *self.speed_range,
            self.median("tokens_per_s_server"),
            self.median("mean_answer_tokens"),
            len(self.runs),
        ]


def server_groups(trials: list[Trial]) -> list[list[tuple[int, Trial]]]:
    """The numbered trials grouped by the server they need, in order of first use."""
    groups: dict[tuple, list[tuple[int, Trial]]] = {}
    for number, trial in enumerate(trials, 1):
        groups.setdefault(trial.start, []).append((number, trial))
    return list(groups.values())


def run_trials(args, session: ServerSession, items: list[Item]) -> list[Outcome]:
    settings = session.settings
    counter = TokenCounter(tokenizer_folder(args.tokenizer, session.info.get("model")))
    log = TrialLog(args.log, signature(items, str(session.info.get("model"))))
    trials = sweep(args, settings, items, counter)
    session.check_all_run_here(trials)
    prompts = prompt_variants(settings.system_prompt)
    questions = [item.question for item in items]
    ran = 0
    # Repeats go round the trials of one server, so that a drift of the machine (or the
    # prefix cache warming up) falls on every trial alike.
    for group in server_groups(trials):
        for repeat in range(1, args.repeats + 1):
            for number, trial in group:
                if len(log.runs(trial)) >= repeat:
                    continue
                server = session.ready_for(trial, prompts[trial.system_prompt])
                requests = plan_requests(trial, questions, settings)
                label = f"trial {number} run {repeat}"
                replies = server.send_all(requests, len(requests), args.timeout, label)
                evaluation = build_evaluation(items, replies, counter)
                record = log.add(trial, evaluation, session.running(trial))
                ran += 1
                print(
                    f"trial {number}/{len(trials)} run {repeat}/{args.repeats} "
                    f"[{trial.source}] {trial.label()}: official {record['official']:.4f} "
                    f"cjk {record['cjk']:.4f} {record['tokens_per_s_wall']:.1f} tok/s wall"
                )
    outcomes = [Outcome(n, t, log.runs(t)[: args.repeats]) for n, t in enumerate(trials, 1)]
    taken = sum(len(o.runs) for o in outcomes) - ran
    print(f"{ran} run(s) done, {taken} taken from {args.log}\n")
    return outcomes


def pareto_front(outcomes: list[Outcome]) -> list[Outcome]:
    """Trials that no other trial matches on official and tokens/s and beats on one."""

    def beats(a: Outcome, b: Outcome) -> bool:
        return (
            a.official >= b.official
            and a.speed >= b.speed
            and (a.official > b.official or a.speed > b.speed)
        )

    front = [o for o in outcomes if not any(beats(other, o) for other in outcomes)]
    return sorted(front, key=lambda o: o.speed, reverse=True)


def ranking(outcomes: list[Outcome], minimum: float) -> list[Outcome]:
    """Trials whose median official reaches ``minimum``, fastest median first."""
    passing = [o for o in outcomes if o.official >= minimum]
    return sorted(passing, key=lambda o: o.speed, reverse=True)


def print_results(outcomes: list[Outcome], minimum: float) -> None:
    headers = ["#", "source", "setting", *RESULT_HEADERS]
    print(
        "trials (official, cjk, tok/s and answer tokens: medians over the runs; "
        "min, max: the range of tok/s wall):"
    )
    print(table(headers, [o.row() for o in outcomes]))
    derived = [o for o in outcomes if o.trial.source != "grid"]
    if derived:
        print("\ndata-driven budgets against trial 1, the setting they start from:")
        print(table(headers, [outcomes[0].row(), *(o.row() for o in derived)]))
    print("\nPareto front, official score against tok/s wall (fastest first):")
    print(table(headers, [o.row() for o in pareto_front(outcomes)]))
    print(f"\nranking by median tok/s wall, median official >= {minimum:g}:")
    ranked = [[rank, *o.row()] for rank, o in enumerate(ranking(outcomes, minimum), 1)]
    print(table(["rank", *headers], ranked))


def write_best(args, outcomes: list[Outcome], minimum: float, session: ServerSession) -> int:
    """The fastest trial (median) that meets --min-official, as KEY=value lines."""
    ranked = ranking(outcomes, minimum)
    if not ranked:
        print(f"no trial reaches --min-official {minimum:g}; nothing written", file=sys.stderr)
        return BELOW_THRESHOLD
    best = ranked[0]
    prompt = prompt_variants(session.settings.system_prompt)[best.trial.system_prompt]
    slowest, fastest = best.speed_range
    lines = [
        f"# python -m eval.tune: trial {best.number}, the fastest median with official >= "
        f"{minimum:g} over {len(best.runs)} run(s): official {best.official:.4f}, "
        f"cjk {best.median('cjk'):.4f}, {best.speed:.1f} tok/s wall "
        f"(min {slowest:.1f}, max {fastest:.1f})",
        *env_lines(best.trial, session.settings, prompt),
    ]
    path = Path(args.env_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\nbest: trial {best.number} {best.trial.label()}\nenv file: {path}")
    return 0


def tune(args: argparse.Namespace) -> int:
    check_arguments(args)
    items = load_items(args.data, args.limit)
    minimum = args.min_official if args.min_official is not None else 0.0
    first = start_grid(args.engine, args.engine_arg, environment_engine_args())[0]
    with ServerSession(args, start_env(first)) as session:
        outcomes = run_trials(args, session, items)
        print_results(outcomes, minimum)
        return write_best(args, outcomes, minimum, session)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return tune(args)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
