"""Warmup: real questions through the /predict path before the port opens."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from prep.datafile import read_questions
from qaserve.core.answerer import Answerer
from qaserve.settings import WarmupSettings

logger = logging.getLogger(__name__)

BUILTIN_QUESTION = "什么是CUDA中的线程块（thread block）？"


def pick_warmup_questions(path: str, count: int, seed: int = 0) -> list[str]:
    if count <= 0:
        return []
    source = Path(path)
    if not source.is_file():
        logger.info("warmup data %s not found; using the built-in question", source)
        return [BUILTIN_QUESTION]
    questions = read_questions(source)
    return random.Random(seed).sample(questions, min(count, len(questions)))


@dataclass
class WarmupReport:
    questions: int
    max_tokens: int | None  # the warmup budget; None: each question's own
    passes: int  # passes over the questions that finished
    completed: bool  # every pass finished within WARMUP_TIMEOUT_SECONDS
    seconds: float
    output_tokens: int
    # What the engine generated per second during warmup: the fast engine, at a glance.
    tokens_per_second: float


async def _passes(
    answerer: Answerer, questions: list[str], settings: WarmupSettings, done: list[int]
):
    overrides = (
        {} if settings.warmup_max_tokens is None else {"max_tokens": settings.warmup_max_tokens}
    )
    for _ in range(settings.warmup_repeat):
        answers = await answerer.answer(questions, overrides)
        done.append(answers.output_tokens)


async def run_warmup(answerer: Answerer, settings: WarmupSettings) -> WarmupReport:
    """Compile the batch shapes and fill the prefix cache before the port opens: the
    questions, WARMUP_REPEAT times, within WARMUP_TIMEOUT_SECONDS."""
    questions = pick_warmup_questions(settings.warmup_data_path, settings.warmup_num_samples)
    started = time.perf_counter()
    done: list[int] = []  # output tokens of each finished pass
    completed = True
    if questions:
        try:
            await asyncio.wait_for(
                _passes(answerer, questions, settings, done), settings.warmup_timeout_seconds
            )
        except asyncio.TimeoutError:
            completed = False
            logger.warning("warmup stopped at its %.0f s budget", settings.warmup_timeout_seconds)
    seconds = time.perf_counter() - started
    tokens = sum(done)
    rate = round(tokens / seconds, 1) if tokens else 0.0
    report = WarmupReport(
        len(questions), settings.warmup_max_tokens, len(done), completed, seconds, tokens, rate
    )
    logger.info("warmup: %s", asdict(report))
    return report
