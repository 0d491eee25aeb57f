"""Calibration text from data.jsonl, as the server shows it to the model: the served system
prompt and chat template (thinking as configured; prep/chat.py renders for both), then the
data's answer and the end token."""

from __future__ import annotations

import json
import random
from pathlib import Path

from prep.chat import render_question


def question_answers(path: Path) -> list[tuple[str, str]]:
    """Each distinct question once (its first answer), in file order."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            messages = {m["role"]: m["content"] for m in json.loads(line)["messages"]}
            question, answer = messages["user"].strip(), messages["assistant"].strip()
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a user/assistant pair ({exc!r})") from exc
        pairs.setdefault(question, answer)
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
