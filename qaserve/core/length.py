"""Length control: token budgets per question class, stop strings, trimming.

Rules that can be stated as a stop condition (stop strings, the example
markers, a sentence count) are handed to the engine so the tokens after them
are never generated; the functions below also run on the final text, as the
fallback for what the engine could not stop (and for the transformers backend).
"""

from __future__ import annotations

from dataclasses import dataclass

from qaserve.settings import BudgetRule, GenerationSettings

_CLAUSE_TAIL = "，,、：；（“ \n\t"


@dataclass(frozen=True)
class LengthPlan:
    rule: str  # the budget rule that matched, or "default"
    max_tokens: int
    max_sentences: int  # 0: no cap


def choose_plan(
    question: str, rules: list[BudgetRule], default_tokens: int, default_sentences: int
) -> LengthPlan:
    """The first rule with a keyword in the question decides; otherwise the defaults."""
    lowered = question.lower()
    for rule in rules:
        if any(keyword.lower() in lowered for keyword in rule.keywords):
            sentences = default_sentences if rule.max_sentences is None else rule.max_sentences
            return LengthPlan(rule.name, rule.max_tokens, sentences)
    return LengthPlan("default", default_tokens, default_sentences)


def cut_at_markers(text: str, markers: list[str]) -> str:
    """Drop the tail from the first example marker on, unless nothing would be left."""
    positions = [pos for pos in (text.find(m) for m in markers) if pos > 0]
    if not positions:
        return text
    head = text[: min(positions)]
    return head if head.strip(_CLAUSE_TAIL) else text


def cap_sentences(text: str, limit: int, endings: str) -> str:
    """Keep the first ``limit`` sentences (0 keeps everything)."""
    if limit <= 0:
        return text
    seen = 0
    for position, char in enumerate(text):
        if char in endings:
            seen += 1
            if seen == limit:
                return text[: position + 1]
    return text


def trim_partial_sentence(text: str, endings: str) -> str:
    """Cut an unfinished last sentence, if at least one sentence is complete."""
    last = max(text.rfind(mark) for mark in endings)
    return text[: last + 1] if last >= 0 else text


def tidy_end(text: str) -> str:
    """Strip whitespace and a dangling clause separator left by a cut."""
    return text.strip().rstrip(_CLAUSE_TAIL).strip()


class LengthPolicy:
    def __init__(self, settings: GenerationSettings):
        self.settings = settings

    def plan(self, question: str) -> LengthPlan:
        s = self.settings
        return choose_plan(question, s.routed_rules(), s.max_new_tokens, s.max_sentences)

    def engine_stops(self) -> tuple[str, ...]:
        stops = self.settings.engine_stop_strings()
        if self.settings.trim_examples:
            stops.extend(self.settings.example_markers)
        return tuple(dict.fromkeys(stops))

    def finalize(self, text: str, max_sentences: int, finish_reason: str) -> str:
        s = self.settings
        if s.trim_examples:
            text = cut_at_markers(text, s.example_markers)
        text = cap_sentences(text, max_sentences, s.sentence_endings)
        # An answer stopped short (budget or deadline) may end mid-sentence.
        if s.trim_partial_sentence and finish_reason in ("length", "deadline"):
            text = trim_partial_sentence(text, s.sentence_endings)
        return tidy_end(text)
