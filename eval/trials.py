"""Tuner trials: one setting of the length-control knobs, and how it reaches the server.

Most knobs travel as per-request overrides, so one running server serves many trials:
questions are grouped by the budget and sentence cap the trial gives them (the server's
own budget rules decide the class, as the server would), each group goes as one /predict
batch with ``max_tokens``/``max_sentences``, and all groups are sent together so the engine
batches them as it would one request. Example trimming travels as ``stop`` (the example
markers, which is what TRIM_EXAMPLES=1 adds to the engine's stops) and the system prompt
through POST /system_prompt. Only trimming a partial sentence and speculative decoding
need a server started with them.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, fields

from eval.client import Request
from eval.errors import EvalError
from qaserve.core.length import choose_plan
from qaserve.settings import BudgetRule

BRIEF_PROMPT = "用一两句准确的中文直接回答问题，先给结论，不举例，不寒暄，不重复问题。"


@dataclass(frozen=True)
class ServerSettings:
    """The settings a trial starts from, as the server reports them in GET /info."""

    budget_rules: list[BudgetRule]
    trim_examples: bool
    example_markers: list[str]
    trim_partial_sentence: bool
    enable_speculative_decoding: bool
    system_prompt: str  # the one answering now, which POST /system_prompt may have replaced

    @classmethod
    def from_info(cls, info: dict | None) -> ServerSettings:
        info = info or {}
        settings = info.get("settings")
        names = [f.name for f in fields(cls) if f.name != "system_prompt"]
        complete = isinstance(settings, dict) and set(names) <= set(settings)
        if not complete or "system_prompt" not in info:
            raise EvalError("the tuner needs this project's server: GET /info with its settings")
        values = {name: settings[name] for name in names}
        values["budget_rules"] = [BudgetRule(**rule) for rule in settings["budget_rules"]]
        return cls(**values, system_prompt=info["system_prompt"])


@dataclass(frozen=True)
class Trial:
    max_new_tokens: int
    rule_budgets: tuple[tuple[str, int], ...]  # (rule name, max_tokens) for every budget rule
    max_sentences: int
    trim_examples: bool
    system_prompt: str  # a name from prompt_variants()
    trim_partial_sentence: bool
    speculative: bool
    source: str = "grid"  # "grid", or "p95" for a data-driven budget proposal

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    def label(self) -> str:
        return " ".join(
            [
                f"tokens={self.max_new_tokens}",
                *(f"{name}={tokens}" for name, tokens in self.rule_budgets),
                f"sentences={self.max_sentences}",
                f"examples={'trim' if self.trim_examples else 'keep'}",
                f"prompt={self.system_prompt}",
                f"partial={'trim' if self.trim_partial_sentence else 'keep'}",
                f"spec={'on' if self.speculative else 'off'}",
            ]
        )

    def server_env(self) -> dict[str, str]:
        """The settings of a server started for this trial: the knobs only a start changes."""
        return {
            "TRIM_PARTIAL_SENTENCE": _flag(self.trim_partial_sentence),
            "ENABLE_SPECULATIVE_DECODING": _flag(self.speculative),
            "TRIM_EXAMPLES": "0",  # the tuner sends the example markers as stops when wanted
        }


@dataclass(frozen=True)
class Knobs:
    """The values to sweep; the grid is their product."""

    budgets: list[int]
    rule_budgets: dict[str, list[int]]
    sentences: list[int]
    trim_examples: list[bool]
    system_prompts: list[str]
    trim_partial: list[bool]
    speculative: list[bool]


def prompt_variants(server_prompt: str) -> dict[str, str]:
    return {"server": server_prompt, "none": "", "brief": BRIEF_PROMPT}


def grid(knobs: Knobs) -> list[Trial]:
    """Every combination, server-start knobs outermost so neighbours share a server."""
    rule_names = list(knobs.rule_budgets)
    combos = itertools.product(
        knobs.speculative,
        knobs.trim_partial,
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
            trim_partial_sentence=partial,
            speculative=spec,
        )
        for spec, partial, prompt, examples, sentences, budget, rule_tokens in combos
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
    if trial.trim_partial_sentence != settings.trim_partial_sentence:
        return f"TRIM_PARTIAL_SENTENCE={_flag(trial.trim_partial_sentence)}"
    if trial.speculative != settings.enable_speculative_decoding:
        return f"ENABLE_SPECULATIVE_DECODING={_flag(trial.speculative)}"
    if settings.trim_examples and not trial.trim_examples:
        return "TRIM_EXAMPLES=0"
    return None


def env_lines(trial: Trial, settings: ServerSettings, system_prompt: str) -> list[str]:
    """KEY=value lines (docker --env-file style: no quoting) that set the trial's knobs."""
    rules = [rule.model_dump() for rule in trial_rules(trial, settings)]
    values = {
        "MAX_NEW_TOKENS": str(trial.max_new_tokens),
        "BUDGET_RULES": json.dumps(rules, ensure_ascii=False),
        "MAX_SENTENCES": str(trial.max_sentences),
        "TRIM_EXAMPLES": _flag(trial.trim_examples),
        "TRIM_PARTIAL_SENTENCE": _flag(trial.trim_partial_sentence),
        "ENABLE_SPECULATIVE_DECODING": _flag(trial.speculative),
        "SYSTEM_PROMPT": system_prompt,
    }
    multiline = [name for name, value in values.items() if "\n" in value]
    if multiline:
        raise EvalError(f"{multiline[0]} spans lines, which an env file cannot hold")
    return [f"{name}={value}" for name, value in values.items()]


def _flag(value: bool) -> str:
    return "1" if value else "0"
