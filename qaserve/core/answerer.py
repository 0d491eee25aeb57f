"""The answering pipeline shared by /predict and warmup: plan, prompt, generate, finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial

from qaserve.core.length import LengthPolicy
from qaserve.core.prompts import PromptBuilder
from qaserve.core.reasoning import split_reasoning
from qaserve.engine import Engine, GenParams

# Up to this much work plans and tokenizes in well under a millisecond, less than a
# thread hop costs; more goes to a thread so the event loop keeps serving.
INLINE_QUESTIONS_MAX = 8
INLINE_CHARS_MAX = 20_000

# A request's changes to the configured sampling, as GenParams fields by name
# (e.g. {"temperature": 0.7, "stop": ("。",)}); a field left out keeps the setting.
Overrides = Mapping[str, object]
# Overrides that the length plan decides per question, or that add to the configured stops.
_PLANNED = frozenset({"max_tokens", "max_sentences", "stop"})


@dataclass
class Answers:
    texts: list[str]
    output_tokens: int
    seconds: float
    cut_at_deadline: int = 0  # answers the deadline stopped


class ParamPlanner:
    """Sampling and stopping for each question: the configured sampling, its length plan,
    the request's overrides."""

    def __init__(self, configured: GenParams, length: LengthPolicy, context_len: int):
        self.configured = configured
        self.length = length
        self.context_len = context_len

    def base_params(self, overrides: Overrides) -> GenParams:
        sampling = {name: value for name, value in overrides.items() if name not in _PLANNED}
        stops = self.length.engine_stops() + tuple(overrides.get("stop", ()))
        return replace(self.configured, **sampling, stop=tuple(dict.fromkeys(stops)))

    def params_for(self, question: str, base: GenParams, overrides: Overrides) -> GenParams:
        plan = self.length.plan(question)
        budget = overrides.get("max_tokens", plan.max_tokens)
        # A budget as large as the context would leave no room for the prompt.
        if budget >= self.context_len:
            budget = self.context_len // 2
        sentences = overrides.get("max_sentences", plan.max_sentences)
        return replace(base, max_tokens=budget, max_sentences=sentences)

    def plan(self, questions: list[str], overrides: Overrides) -> list[GenParams]:
        base = self.base_params(overrides)
        return [self.params_for(q, base, overrides) for q in questions]


class Answerer:
    def __init__(
        self, engine: Engine, prompts: PromptBuilder, planner: ParamPlanner, system_prompt: str
    ):
        self.engine = engine
        self.prompts = prompts
        self.planner = planner
        self.system_prompt = system_prompt

    def _prepare(
        self, questions: list[str], overrides: Overrides
    ) -> tuple[list[GenParams], list[list[int]]]:
        params = self.planner.plan(questions, overrides)
        budgets = [p.max_tokens for p in params]
        return params, self.prompts.encode_many(self.system_prompt, questions, budgets)

    @property
    def context_len(self) -> int:
        return self.prompts.context_len

    async def answer(
        self,
        questions: list[str],
        overrides: Overrides | None = None,
        deadline: float | None = None,
    ) -> Answers:
        """Answers in order; at ``deadline`` (time.monotonic()) the unfinished ones are cut."""
        started = time.perf_counter()
        prepare = partial(self._prepare, questions, overrides or {})
        small = len(questions) <= INLINE_QUESTIONS_MAX
        if small and sum(map(len, questions)) <= INLINE_CHARS_MAX:
            params, prompt_ids = prepare()
        else:
            params, prompt_ids = await asyncio.to_thread(prepare)
        results = await self.engine.generate_batch(prompt_ids, params, deadline)
        thinking = self.prompts.enable_thinking
        texts = [
            self.planner.length.finalize(
                split_reasoning(r.text, thinking)[1], p.max_sentences, r.finish_reason
            )
            for r, p in zip(results, params, strict=True)
        ]
        return Answers(
            texts=texts,
            output_tokens=sum(r.output_tokens for r in results),
            seconds=time.perf_counter() - started,
            cut_at_deadline=sum(r.finish_reason == "deadline" for r in results),
        )
