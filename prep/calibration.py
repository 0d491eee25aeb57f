"""Calibration text from data.jsonl, as the server shows it to the model: the served system
prompt and chat template (thinking as configured; prep/chat.py renders for both), then the
data's answer and the end token."""

from __future__ import annotations

import random
from pathlib import Path

from prep.chat import render_question
from prep.datafile import read_pairs


def question_answers(path: Path) -> list[tuple[str, str]]:
    """Each distinct question once (its first answer), stripped, in file order; a bad line
    is a DataFileError (a ValueError) naming it."""
    pairs: dict[str, str] = {}
    for question, answer in read_pairs(path):
        pairs.setdefault(question.strip(), answer.strip())
    return list(pairs.items())


def calibration_texts(
    path: Path, tokenizer, count: int, seed: int, *, system_prompt: str, enable_thinking: bool
) -> list[str]:
    """``count`` distinct questions drawn with ``seed`` (all of them if fewer), rendered as
    served (the server's SYSTEM_PROMPT and ENABLE_THINKING) and followed by their answers."""
    pairs = question_answers(path)
    chosen = random.Random(seed).sample(pairs, min(count, len(pairs)))
    return [
        render_question(tokenizer, system_prompt, question, enable_thinking)
        + answer
        + tokenizer.eos_token
        for question, answer in chosen
    ]
