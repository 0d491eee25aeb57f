"""The answering pipeline shared by /predict and warmup: plan, prompt, generate, finish."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from functools import partial

from qaserve.engine import Engine, GenParams
from qaserve.length import LengthPolicy
from qaserve.prompts import PromptBuilder, strip_think
from qaserve.settings import Settings

INLINE_TOKENIZE_MAX = 8


@dataclass(frozen=True)
class Overrides:
    """Per-request changes to the configured sampling; None keeps the setting."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_sentences: int | None = None


@dataclass
class Answers:
    texts: list[str]
    output_tokens: int
    seconds: float


@dataclass
class Counters:
    requests: int = 0
    items: int = 0
    output_tokens: int = 0
    engine_seconds: float = 0.0
    in_flight: int = 0

    def add(self, answers: Answers) -> None:
        self.requests += 1
        self.items += len(answers.texts)
        self.output_tokens += answers.output_tokens
        self.engine_seconds += answers.seconds


def sampling_params(settings: Settings, overrides: Overrides) -> GenParams:
    """The configured sampling with a request's overrides; no length rules."""
    s, o = settings, overrides
    return GenParams(
        max_tokens=_pick(o.max_tokens, s.max_new_tokens),
        temperature=_pick(o.temperature, s.temperature),
        top_p=_pick(o.top_p, s.top_p),
        top_k=_pick(o.top_k, s.top_k),
        repetition_penalty=_pick(o.repetition_penalty, s.repetition_penalty),
        frequency_penalty=_pick(o.frequency_penalty, s.frequency_penalty),
        presence_penalty=_pick(o.presence_penalty, s.presence_penalty),
        seed=o.seed,
        stop=o.stop,
    )


@dataclass
class ParamPlanner:
    """Sampling and stopping for each question: settings, its length plan, overrides."""

    settings: Settings
    context_len: int

    def __post_init__(self):
        self.length = LengthPolicy(self.settings)

    def base_params(self, overrides: Overrides) -> GenParams:
        return replace(
            sampling_params(self.settings, overrides),
            stop=tuple(dict.fromkeys(self.length.engine_stops() + overrides.stop)),
            sentence_endings=self.settings.sentence_endings,
        )

    def params_for(self, question: str, base: GenParams, overrides: Overrides) -> GenParams:
        plan = self.length.plan(question)
        budget = _pick(overrides.max_tokens, plan.max_tokens)
        # A budget as large as the context would leave no room for the prompt.
        if budget >= self.context_len:
            budget = self.context_len // 2
        return replace(
            base,
            max_tokens=budget,
            max_sentences=_pick(overrides.max_sentences, plan.max_sentences),
        )

    def plan(self, questions: list[str], overrides: Overrides) -> list[GenParams]:
        base = self.base_params(overrides)
        return [self.params_for(q, base, overrides) for q in questions]


@dataclass
class Answerer:
    settings: Settings
    engine: Engine
    prompts: PromptBuilder
    system_prompt: str
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self):
        self.planner = ParamPlanner(self.settings, self.prompts.context_len)

    async def answer(self, questions: list[str], overrides: Overrides = Overrides()) -> Answers:
        self.counters.in_flight += 1
        try:
            answers = await self._answer(questions, overrides)
        finally:
            self.counters.in_flight -= 1
        self.counters.add(answers)
        return answers

    async def _answer(self, questions: list[str], overrides: Overrides) -> Answers:
        started = time.perf_counter()
        params = self.planner.plan(questions, overrides)
        encode = partial(
            self.prompts.encode_many, self.system_prompt, questions, [p.max_tokens for p in params]
        )
        # A few prompts tokenize in well under a millisecond, less than a thread hop costs;
        # a big batch goes to a thread so the event loop keeps serving.
        prompt_ids = (
            encode() if len(questions) <= INLINE_TOKENIZE_MAX else await asyncio.to_thread(encode)
        )
        results = await self.engine.generate_batch(prompt_ids, params)
        texts = [
            self.planner.length.finalize(strip_think(r.text), p.max_sentences, r.finish_reason)
            for r, p in zip(results, params, strict=True)
        ]
        return Answers(
            texts=texts,
            output_tokens=sum(r.output_tokens for r in results),
            seconds=time.perf_counter() - started,
        )


def _pick(override, default):
    return default if override is None else override
