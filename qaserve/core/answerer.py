"""The answering pipeline shared by /predict and warmup: plan, prompt, generate, finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from qaserve.core.length import LengthPolicy
from qaserve.core.prompts import PromptBuilder
from qaserve.core.reasoning import split_reasoning
from qaserve.engine import Engine, GenParams, GenResult

# A batch is prepared (planned, rendered, tokenized) and finished a slice at a time, yielding to
# the event loop between slices, so health and other requests are answered during a
# 10,000-item batch: the Python work of a slice takes a millisecond or two, and a full slice is
# tokenized in a worker thread, where the tokenizer runs without the GIL. (Preparing the whole
# batch in a thread held the GIL in rendering, and a GET / waited 100-250 ms on it.)
SLICE_QUESTIONS = 256
SLICE_CHARS = 80_000
# Rendered prompts up to this many characters are tokenized on the loop, in less time than the
# hop to a thread costs (a single question, a handful).
INLINE_TOKENIZE_CHARS = 4_000

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

    def plan(self, questions: list[str], overrides: Overrides) -> list[GenParams]:
        """One GenParams per question; questions with the same plan share one object (a batch
        has a handful of distinct plans), which the engine adapter builds its sampling from once."""
        base = self.base_params(overrides)
        built: dict[tuple[int, int], GenParams] = {}
        params = []
        for question in questions:
            plan = self.length.plan(question)
            budget = overrides.get("max_tokens", plan.max_tokens)
            # A budget as large as the context would leave no room for the prompt.
            if budget >= self.context_len:
                budget = self.context_len // 2
            key = (budget, overrides.get("max_sentences", plan.max_sentences))
            if key not in built:
                built[key] = replace(base, max_tokens=key[0], max_sentences=key[1])
            params.append(built[key])
        return params


def slices(questions: list[str]) -> Iterator[slice]:
    """Consecutive slices of at most SLICE_QUESTIONS questions or SLICE_CHARS characters (a
    longer question is a slice of its own)."""
    start, chars = 0, 0
    for end, question in enumerate(questions):
        if end > start and (end - start == SLICE_QUESTIONS or chars + len(question) > SLICE_CHARS):
            yield slice(start, end)
            start, chars = end, 0
        chars += len(question)
    if start < len(questions):
        yield slice(start, len(questions))


class Answerer:
    def __init__(
        self, engine: Engine, prompts: PromptBuilder, planner: ParamPlanner, system_prompt: str
    ):
        self.engine = engine
        self.prompts = prompts
        self.planner = planner
        self.system_prompt = system_prompt

    async def _prepare(
        self, questions: list[str], overrides: Overrides
    ) -> tuple[list[GenParams], list[list[int]]]:
        params: list[GenParams] = []
        prompt_ids: list[list[int]] = []
        system_prompt, prompts = self.system_prompt, self.prompts
        for part in slices(questions):
            planned = self.planner.plan(questions[part], overrides)
            texts = prompts.prompt_texts(system_prompt, questions[part])
            if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
                encoded = prompts.token_ids_many(texts)
            else:  # the tokenizer releases the GIL: the loop serves meanwhile
                encoded = await asyncio.to_thread(prompts.token_ids_many, texts)
            budgets = [p.max_tokens for p in planned]
            prompt_ids += prompts.fit_all(system_prompt, questions[part], encoded, budgets)
            params += planned
            await asyncio.sleep(0)
        return params, prompt_ids

    async def _finish(self, results: list[GenResult], params: list[GenParams]) -> list[str]:
        thinking = self.prompts.enable_thinking
        finalize = self.planner.length.finalize
        texts: list[str] = []
        for start in range(0, len(results), SLICE_QUESTIONS):
            part = slice(start, start + SLICE_QUESTIONS)
            texts += [
                finalize(split_reasoning(r.text, thinking)[1], p.max_sentences, r.finish_reason)
                for r, p in zip(results[part], params[part], strict=True)
            ]
            await asyncio.sleep(0)
        return texts

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
        params, prompt_ids = await self._prepare(questions, overrides or {})
        results = await self.engine.generate_batch(prompt_ids, params, deadline)
        return Answers(
            texts=await self._finish(results, params),
            output_tokens=sum(r.output_tokens for r in results),
            seconds=time.perf_counter() - started,
            cut_at_deadline=sum(r.finish_reason == "deadline" for r in results),
        )
