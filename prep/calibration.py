"""Calibration text from data.jsonl, as the server shows it to the model: the served system
prompt and chat template (thinking as configured), then the data's answer and the end token."""

from __future__ import annotations

import json
import random
from pathlib import Path

from qaserve.core.prompts import PromptBuilder
from qaserve.settings import Settings


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


def calibration_texts(path: Path, tokenizer, count: int, seed: int, max_tokens: int) -> list[str]:
    """``count`` distinct questions drawn with ``seed`` (all of them if fewer), rendered as
    served and followed by their answers."""
    served = Settings()  # SYSTEM_PROMPT and ENABLE_THINKING, as the server reads them
    pairs = question_answers(path)
    chosen = random.Random(seed).sample(pairs, min(count, len(pairs)))
    prompts = PromptBuilder(
        tokenizer, context_len=max_tokens, enable_thinking=served.enable_thinking
    )
    return [
        prompts.render(served.system_prompt, question) + answer + tokenizer.eos_token
        for question, answer in chosen
    ]
