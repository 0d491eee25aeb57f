"""Data-driven budgets: per question class, a percentile of the reference answers' lengths.

The class of a question is the budget rule the server would pick for it ("default" when
none matches); lengths are tokens of the model's own tokenizer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from eval.readers import Item
from eval.report import table
from eval.stats import nearest_rank
from eval.tokens import TokenCounter
from eval.trials import Trial
from qaserve.core.length import choose_plan
from qaserve.settings import BudgetRule

DEFAULT_CLASS = "default"


def reference_lengths(
    items: list[Item], rules: list[BudgetRule], counter: TokenCounter
) -> dict[str, list[int]]:
    """Reference answer lengths in tokens, per question class, classes in rule order."""
    lengths = counter.count([item.answer for item in items])
    by_class: dict[str, list[int]] = defaultdict(list)
    for item, length in zip(items, lengths, strict=True):
        by_class[choose_plan(item.question, rules, 0, 0).rule].append(length)
    order = [rule.name for rule in rules] + [DEFAULT_CLASS]
    return {name: by_class[name] for name in order if name in by_class}


def propose(lengths: dict[str, list[int]], percent: float) -> dict[str, int]:
    """The budget per class: the reference length at that percentile (nearest rank)."""
    return {name: int(nearest_rank(values, percent)) for name, values in lengths.items()}


def proposed_trial(base: Trial, budgets: dict[str, int], percent: float) -> Trial:
    """The base trial with the proposed budgets; a class without questions keeps its budget."""
    return replace(
        base,
        max_new_tokens=budgets.get(DEFAULT_CLASS, base.max_new_tokens),
        rule_budgets=tuple((name, budgets.get(name, tokens)) for name, tokens in base.rule_budgets),
        source=f"p{percent:g}",
    )


def proposal_table(lengths: dict[str, list[int]], percents: list[float]) -> str:
    headers = ["class", "n", "ref tok p50", "ref tok max", *(f"budget p{p:g}" for p in percents)]
    proposals = [propose(lengths, percent) for percent in percents]
    rows = [
        [name, len(values), nearest_rank(values, 50), max(values), *(p[name] for p in proposals)]
        for name, values in lengths.items()
    ]
    return table(headers, rows)
