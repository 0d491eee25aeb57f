"""Warmup: real questions through the /predict path before the port opens."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qaserve.core.answerer import Answerer
from qaserve.settings import Settings

logger = logging.getLogger(__name__)

BUILTIN_QUESTION = "什么是CUDA中的线程块（thread block）？"


def read_questions(path: Path) -> list[str]:
    """User turns of a seed-format jsonl file ({"messages": [user, assistant]} per line)."""
    questions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            messages = json.loads(line)["messages"]
            questions.extend(m["content"] for m in messages if m["role"] == "user")
    return questions


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
    completed: bool
    seconds: float
    output_tokens: int
    # What the engine generated per second during warmup: the fast engine, at a glance.
    tokens_per_second: float


async def run_warmup(answerer: Answerer, settings: Settings) -> WarmupReport:
    questions = pick_warmup_questions(settings.warmup_data_path, settings.warmup_num_samples)
    started = time.perf_counter()
    tokens, completed = 0, True
    if questions:
        try:
            answers = await asyncio.wait_for(
                answerer.answer(questions), timeout=settings.warmup_timeout_seconds
            )
            tokens = answers.output_tokens
        except asyncio.TimeoutError:
            completed = False
            logger.warning("warmup stopped at its %.0f s budget", settings.warmup_timeout_seconds)
    seconds = time.perf_counter() - started
    rate = round(tokens / seconds, 1) if tokens else 0.0
    report = WarmupReport(len(questions), completed, seconds, tokens, rate)
    logger.info("warmup: %s", asdict(report))
    return report
