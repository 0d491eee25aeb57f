"""Tuner trials: one setting of the knobs, and how it reaches the server.

Most knobs travel as per-request overrides, so one running server serves many trials:
questions are grouped by the budget and sentence cap the trial gives them (the server's
own budget rules decide the class, as the server would), each group goes as one /predict
batch with ``max_tokens``/``max_sentences``, and all groups are sent together so the engine
batches them as it would one request. Example trimming travels as ``stop`` (the example
markers, which is what TRIM_EXAMPLES=1 adds to the engine's stops) and the system prompt
through POST /system_prompt. Settings the server reads only at start (engine capacity,
context, speculation, trimming a partial sentence: any ``--engine NAME=V1,V2``, and the
VLLM_ENGINE_ARGS entries of ``--engine-arg NAME=V1,V2``) need a server started with them;
trials that share them share one server.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pydantic import ValidationError

from eval.client import Request
from eval.errors import EvalError
from qaserve.core.length import choose_plan
from qaserve.engine.vllm_backend import SETTING_OF_KEYWORD
from qaserve.settings import BudgetRule, Settings

BRIEF_PROMPT = "用一两句准确的中文直接回答问题，先给结论，不举例，不寒暄，不重复问题。"

# Settings that --engine cannot sweep: the tuner sets them per request or itself, or they
# change what is measured (the log is kept per model).
NOT_START_KNOBS = {
    "max_new_tokens": "a per-request knob (--budgets)",
    "budget_rules": "a per-request knob (--rule-budget)",
    "max_sentences": "a per-request knob (--sentences)",
    "trim_examples": "a per-request knob (--trim-examples)",
    "system_prompt": "a per-request knob (--system-prompts)",
    "model_dir": "what is measured, not a knob",
    "model_manifest": "what is measured, not a knob",
    "host": "set by the tuner",
    "port": "set by the tuner",
    "vllm_engine_args": "swept entry by entry (--engine-arg NAME=V1,V2)",
}

StartKnob = tuple[str, tuple[str, ...]]  # a setting's environment name, and values to sweep


def setting_value(name: str, text: str) -> Any:
    """The value the server would read from ``NAME=text``, as GET /info shows it (JSON): the
    settings object itself parses it, list formats and field validators included."""
    field = name.lower()
    return Settings.model_validate({field: text}).model_dump(mode="json")[field]


def parse_start_knob(spec: str) -> StartKnob:
    """``NAME=V1,V2`` (--engine): a setting the server reads at start and its values, each
    checked as the server would check it."""
    name, equals, text = spec.partition("=")
    name = name.strip().upper()
    values = tuple(value.strip() for value in text.split(",") if value.strip())
    if not equals or not values or name.lower() not in Settings.model_fields:
        raise EvalError(
            f"--engine {spec}: expected NAME=V1,V2 with NAME a setting of the server "
            "(the README's settings table)"
        )
    if name.lower() in NOT_START_KNOBS:
        raise EvalError(f"--engine {spec}: {name} is {NOT_START_KNOBS[name.lower()]}")
    for value in values:
        try:
            setting_value(name, value)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise EvalError(f"--engine {spec}: {value!r} is not a valid {name}: {reason}") from exc
    return name, values


EngineArgKnob = tuple[str, tuple[Any, ...]]  # a VLLM_ENGINE_ARGS entry, and values to sweep


def json_values(text: str) -> list[Any]:
    """``V1,V2`` of --engine-arg: JSON values, each followed by a comma or the end. A comma
    counts only once a value is complete, so commas inside an object or list never split
    it. A value that does not start a JSON object, list or string and is not a JSON
    number, true, false or null is a plain string (``FLASH_ATTN``)."""
    decoder = json.JSONDecoder()
    values, at = [], 0
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at < len(text) and text[at] in '{["':
            value, end = decoder.raw_decode(text, at)
        else:
            end = text.find(",", at)
            end = len(text) if end < 0 else end
            word = text[at:end].strip()
            if not word:
                raise ValueError(f"an empty value at character {at}")
            try:
                value = json.loads(word)
            except json.JSONDecodeError:
                value = word
        while end < len(text) and text[end].isspace():
            end += 1
        if end < len(text) and text[end] != ",":
            raise ValueError(f"expected a comma after the value at character {at}")
        values.append(value)
        at = end + 1
    return values


def parse_engine_arg_knob(spec: str) -> EngineArgKnob:
    """``NAME=V1,V2`` (--engine-arg): an entry of VLLM_ENGINE_ARGS and its JSON values."""
    name, equals, text = spec.partition("=")
    name = name.strip()
    try:
        values = tuple(json_values(text))
    except ValueError as exc:  # json.JSONDecodeError is one
        raise EvalError(f"--engine-arg {spec}: {exc}") from exc
    if not equals or not name.isidentifier() or not values:
        raise EvalError(
            f"--engine-arg {spec}: expected NAME=V1,V2 with NAME an argument of vLLM's "
            "AsyncEngineArgs and JSON values"
        )
    if name in SETTING_OF_KEYWORD:
        setting = SETTING_OF_KEYWORD[name].upper()
        raise EvalError(
            f"--engine-arg {spec}: {name} comes from {setting}; use --engine {setting}="
        )
    return name, values


@dataclass(frozen=True)
class ServerSettings:
    """The settings a trial starts from, as the server reports them in GET /info."""

    budget_rules: list[BudgetRule]
    trim_examples: bool
    example_markers: list[str]
    system_prompt: str  # the one answering now, which POST /system_prompt may have replaced
    values: dict[str, Any]  # every setting, by field name, as the server runs it

    @classmethod
    def from_info(cls, info: dict | None) -> ServerSettings:
        info = info or {}
        settings = info.get("settings")
        names = [f.name for f in fields(cls) if f.name not in ("system_prompt", "values")]
        complete = isinstance(settings, dict) and set(names) <= set(settings)
        if not complete or "system_prompt" not in info:
            raise EvalError("the tuner needs this project's server: GET /info with its settings")
        values = {name: settings[name] for name in names}
        values["budget_rules"] = [BudgetRule(**rule) for rule in settings["budget_rules"]]
        return cls(**values, system_prompt=info["system_prompt"], values=settings)

    def differences(self, start: tuple[tuple[str, str], ...]) -> list[str]:
        """The ``NAME=value`` start settings this server does not run with."""
        return [
            f"{name}={text}"
            for name, text in start
            if setting_value(name, text) != self.values.get(name.lower())
        ]


@dataclass(frozen=True)
class Trial:
    max_new_tokens: int
    rule_budgets: tuple[tuple[str, int], ...]  # (rule name, max_tokens) for every budget rule
    max_sentences: int
    trim_examples: bool
    system_prompt: str  # a name from prompt_variants()
    start: tuple[tuple[str, str], ...] = ()  # (NAME, value): settings only a start changes
    source: str = "grid"  # "grid", or "p95" for a data-driven budget proposal

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    def label(self) -> str:
        return " ".join(
            [
                *(f"{name}={value}" for name, value in self.start),
                f"tokens={self.max_new_tokens}",
                *(f"{name}={tokens}" for name, tokens in self.rule_budgets),
                f"sentences={self.max_sentences}",
                f"examples={'trim' if self.trim_examples else 'keep'}",
                f"prompt={self.system_prompt}",
            ]
        )


@dataclass(frozen=True)
class Knobs:
    """The values to sweep; the grid is their product."""

    budgets: list[int]
    rule_budgets: dict[str, list[int]]
    sentences: list[int]
    trim_examples: list[bool]
    system_prompts: list[str]
    start: list[StartKnob]  # --engine
    engine_args: list[EngineArgKnob] = field(default_factory=list)  # --engine-arg
    base_engine_args: dict[str, Any] = field(default_factory=dict)  # what they merge onto


def prompt_variants(server_prompt: str) -> dict[str, str]:
    return {"server": server_prompt, "none": "", "brief": BRIEF_PROMPT}


def start_grid(
    knobs: list[StartKnob],
    engine_args: list[EngineArgKnob] = (),
    base_engine_args: dict[str, Any] | None = None,
) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the start settings: one server each. The --engine-arg entries of
    a combination, merged onto ``base_engine_args``, are its VLLM_ENGINE_ARGS."""
    names = [name for name, _ in knobs]
    combos = itertools.product(*(values for _, values in knobs))
    settings = [tuple(zip(names, combo, strict=True)) for combo in combos]
    if not engine_args:
        return settings
    arg_names = [name for name, _ in engine_args]
    merged = [
        json.dumps({**(base_engine_args or {}), **dict(zip(arg_names, combo, strict=True))})
        for combo in itertools.product(*(values for _, values in engine_args))
    ]
    return [(*start, ("VLLM_ENGINE_ARGS", args)) for start in settings for args in merged]


def start_env(start: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The settings of a server started for trials with these start settings."""
    # The tuner sends the example markers as stops when a trial wants them.
    return {**dict(start), "TRIM_EXAMPLES": "0"}


def grid(knobs: Knobs) -> list[Trial]:
    """Every combination, server-start knobs outermost so neighbours share a server."""
    rule_names = list(knobs.rule_budgets)
    combos = itertools.product(
        start_grid(knobs.start, knobs.engine_args, knobs.base_engine_args),
        knobs.system_prompts,
        knobs.trim_examples,
        knobs.sentences,
        knobs.budgets,
        itertools.product(*knobs.rule_budgets.values()),
    )
    return [
        Trial(
            max_new_tokens=budget,
            rule_budgets=tuple(zip(rule_names, rule_tokens, strict=True)),
            max_sentences=sentences,
            trim_examples=examples,
            system_prompt=prompt,
            start=start,
        )
        for start, prompt, examples, sentences, budget, rule_tokens in combos
    ]


def trial_rules(trial: Trial, settings: ServerSettings) -> list[BudgetRule]:
    """The server's budget rules with the trial's budgets."""
    budgets = dict(trial.rule_budgets)
    return [
        rule.model_copy(update={"max_tokens": budgets.get(rule.name, rule.max_tokens)})
        for rule in settings.budget_rules
    ]


def plan_requests(trial: Trial, questions: list[str], settings: ServerSettings) -> list[Request]:
    """One /predict batch per (budget, sentence cap) the trial gives the questions."""
    rules = trial_rules(trial, settings)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, question in enumerate(questions):
        plan = choose_plan(question, rules, trial.max_new_tokens, trial.max_sentences)
        groups[(plan.max_tokens, plan.max_sentences)].append(index)
    stop = {"stop": settings.example_markers} if trial.trim_examples else {}
    return [
        Request(
            tuple(indices),
            {
                "prompt": [questions[i] for i in indices],
                "max_tokens": tokens,
                "max_sentences": sentences,
                **stop,
            },
        )
        for (tokens, sentences), indices in groups.items()
    ]


def runs_on(trial: Trial, settings: ServerSettings) -> str | None:
    """Why the trial cannot run on a server with these settings, or None if it can."""
    differences = settings.differences(trial.start)
    if settings.trim_examples and not trial.trim_examples:
        differences.append("TRIM_EXAMPLES=0")
    return " ".join(differences) or None


def env_lines(trial: Trial, settings: ServerSettings, system_prompt: str) -> list[str]:
    """KEY=value lines (docker --env-file style: no quoting) that set the trial's knobs."""
    rules = [rule.model_dump() for rule in trial_rules(trial, settings)]
    values = {
        "MAX_NEW_TOKENS": str(trial.max_new_tokens),
        "BUDGET_RULES": json.dumps(rules, ensure_ascii=False),
        "MAX_SENTENCES": str(trial.max_sentences),
        "TRIM_EXAMPLES": "1" if trial.trim_examples else "0",
        "SYSTEM_PROMPT": system_prompt,
        **dict(trial.start),
    }
    multiline = [name for name, value in values.items() if "\n" in value]
    if multiline:
        raise EvalError(f"{multiline[0]} spans lines, which an env file cannot hold")
    return [f"{name}={value}" for name, value in values.items()]
