"""The data file: JSON lines in the seed format, one conversation a line,

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

and the one reader of it: the server's warmup takes its questions, the quantizer's
calibration and the evaluator its question/answer pairs (the evaluator reads other formats
too, with ``json_lines`` and ``question_answer``). A file that is not there, or a line that
is not such a record, is a DataFileError that names the file and the line.

Only the standard library here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


class DataFileError(ValueError):
    """A missing data file, or a line of one that cannot be read as it should."""


def json_lines(path: str | Path) -> Iterator[tuple[str, dict]]:
    """("file:line", the line's JSON object) for each line that is not blank."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path} does not exist")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{where}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise DataFileError(f"{where}: expected a JSON object")
            yield where, record


def _turns(where: str, record: dict) -> list[dict]:
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise DataFileError(f'{where}: expected {{"messages": [...]}}, a list of turns')
    return [turn if isinstance(turn, dict) else {} for turn in messages]


def question_answer(where: str, record: dict) -> tuple[str, str]:
    """The first user turn of a record and the first assistant turn after it, as written."""
    turns = _turns(where, record)
    roles = [turn.get("role") for turn in turns]
    if "user" in roles and "assistant" in roles[roles.index("user") :]:
        user = roles.index("user")
        assistant = roles.index("assistant", user)
        question, answer = turns[user].get("content"), turns[assistant].get("content")
        if isinstance(question, str) and isinstance(answer, str):
            return question, answer
    raise DataFileError(
        f"{where}: messages need a user turn and then an assistant turn, as strings"
    )


def user_turns(where: str, record: dict) -> list[str]:
    """Every user turn of a record, as written."""
    questions = []
    for turn in _turns(where, record):
        if turn.get("role") == "user":
            if not isinstance(turn.get("content"), str):
                raise DataFileError(f"{where}: a user turn's content is not a string")
            questions.append(turn["content"])
    return questions


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(question, answer) per line, in file order: ``question_answer`` of each."""
    return [question_answer(where, record) for where, record in json_lines(path)]


def read_questions(path: str | Path) -> list[str]:
    """Every user turn in the file, in order (duplicates kept)."""
    return [
        question for where, record in json_lines(path) for question in user_turns(where, record)
    ]
