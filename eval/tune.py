"""``python -m eval.tune``: sweep length-control settings against accuracy and throughput.

Runs every trial of the grid (and the data-driven budget proposals) on the server, keeps
each result in a resumable jsonl log, prints the Pareto front of official score against
tokens/s (wall), and writes the fastest trial that meets --min-official as an env file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from eval.budgets import proposal_table, propose, proposed_trial, reference_lengths
from eval.cli import BELOW_THRESHOLD, FAILED, add_server_arguments, load_items
from eval.client import ServerClient
from eval.errors import EvalError
from eval.readers import Item
from eval.report import table
from eval.results import build_evaluation
from eval.tokens import TokenCounter, tokenizer_folder
from eval.trials import (
    Knobs,
    ServerSettings,
    Trial,
    env_lines,
    grid,
    plan_requests,
    prompt_variants,
    runs_on,
)
from eval.tunelog import TrialLog, signature
from qaserve.devtools.launcher import Server

RESULT_HEADERS = ["official", "cjk", "tok/s wall", "tok/s server", "mean answer tok"]


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
    p.add_argument("--trim-partial", type=_list_of(_flag), help="default: the server's (start)")
    p.add_argument("--speculative", type=_list_of(_flag), help="default: the server's (start)")
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

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.servers = ExitStack()
        self.server = ServerClient(args.url, args.api_key)
        self.info: dict = {}
        self.settings: ServerSettings
        self.prompt = ""

    def __enter__(self) -> ServerSession:
        if self.args.launch:
            self._start({})
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
        log = Path(self.args.log).parent / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"starting a server with {env or 'the environment as it is'} (log: {log})")
        launched = launched_server(env, log, self.args.wait, self.args.api_key)
        self.server = self.servers.enter_context(launched)
        self._read_settings()

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
        if runs_on(trial, self.settings):
            self._start(trial.server_env())
        if system_prompt != self.prompt:
            self.use_prompt(system_prompt)
        return self.server


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


def sweep(args, settings: ServerSettings, items: list[Item], counter: TokenCounter) -> list[Trial]:
    unknown = set(args.system_prompts) - set(prompt_variants(""))
    if unknown:
        raise EvalError(f"--system-prompts: unknown {sorted(unknown)}; use server, brief, none")
    knobs = Knobs(
        budgets=args.budgets,
        rule_budgets=rule_budget_lists(args.rule_budget, settings),
        sentences=args.sentences,
        trim_examples=args.trim_examples,
        system_prompts=args.system_prompts,
        trim_partial=args.trim_partial or [settings.trim_partial_sentence],
        speculative=args.speculative or [settings.enable_speculative_decoding],
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
    number: int
    trial: Trial
    record: dict  # the trial's line in the log

    @property
    def official(self) -> float:
        return self.record["official"]

    @property
    def speed(self) -> float:
        return self.record["tokens_per_s_wall"]

    def row(self) -> list:
        r = self.record
        scores = [r["official"], r["cjk"], r["tokens_per_s_wall"], r["tokens_per_s_server"]]
        return [
            self.number,
            self.trial.source,
            self.trial.label(),
            *scores,
            r["mean_answer_tokens"],
        ]


def run_trials(args, session: ServerSession, items: list[Item]) -> list[Outcome]:
    settings = session.settings
    counter = TokenCounter(tokenizer_folder(args.tokenizer, session.info.get("model")))
    log = TrialLog(args.log, signature(items, str(session.info.get("model"))))
    trials = sweep(args, settings, items, counter)
    session.check_all_run_here(trials)
    prompts = prompt_variants(settings.system_prompt)
    questions = [item.question for item in items]
    outcomes, ran = [], 0
    for number, trial in enumerate(trials, 1):
        header = f"trial {number}/{len(trials)} [{trial.source}] {trial.label()}"
        record = log.find(trial)
        if record is None:
            server = session.ready_for(trial, prompts[trial.system_prompt])
            requests = plan_requests(trial, questions, settings)
            replies = server.send_all(requests, len(requests), args.timeout, f"trial {number}")
            record = log.add(trial, build_evaluation(items, replies, counter))
            ran += 1
        else:
            header += " (from the log)"
        outcome = Outcome(number, trial, record)
        print(
            f"{header}: official {outcome.official:.4f} cjk {record['cjk']:.4f} "
            f"{outcome.speed:.1f} tok/s wall"
        )
        outcomes.append(outcome)
    print(f"{ran} trial(s) run, {len(trials) - ran} taken from {args.log}\n")
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


def print_results(outcomes: list[Outcome]) -> None:
    headers = ["#", "source", "setting", *RESULT_HEADERS]
    print("trials:")
    print(table(headers, [o.row() for o in outcomes]))
    derived = [o for o in outcomes if o.trial.source != "grid"]
    if derived:
        print("\ndata-driven budgets against trial 1, the setting they start from:")
        print(table(headers, [outcomes[0].row(), *(o.row() for o in derived)]))
    print("\nPareto front, official score against tok/s wall (fastest first):")
    print(table(headers, [o.row() for o in pareto_front(outcomes)]))


def write_best(args, outcomes: list[Outcome], session: ServerSession) -> int:
    """The fastest trial that meets --min-official, as KEY=value lines."""
    minimum = args.min_official if args.min_official is not None else 0.0
    passing = [o for o in outcomes if o.official >= minimum]
    if not passing:
        print(f"no trial reaches --min-official {minimum:g}; nothing written", file=sys.stderr)
        return BELOW_THRESHOLD
    best = max(passing, key=lambda o: o.speed)
    prompt = prompt_variants(session.settings.system_prompt)[best.trial.system_prompt]
    lines = [
        f"# python -m eval.tune: trial {best.number}, official {best.official:.4f}, "
        f"cjk {best.record['cjk']:.4f}, {best.speed:.1f} tok/s wall "
        f"(fastest with official >= {minimum:g})",
        *env_lines(best.trial, session.settings, prompt),
    ]
    path = Path(args.env_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\nbest: trial {best.number} {best.trial.label()}\nenv file: {path}")
    return 0


def tune(args: argparse.Namespace) -> int:
    items = load_items(args.data, args.limit)
    with ServerSession(args) as session:
        outcomes = run_trials(args, session, items)
        print_results(outcomes)
        return write_best(args, outcomes, session)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return tune(args)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
