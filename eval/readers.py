"""Question/answer sets and saved predictions, from jsonl and .docx files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eval.errors import EvalError
from prep.datafile import DataFileError, json_lines, question_answer

# A .docx paragraph that opens a question or an answer, with a full- or half-width colon.
_DOCX_FIELD = re.compile(r"^\s*(问题|答案)\s*[：:]\s*")


@dataclass(frozen=True)
class Item:
    question: str
    answer: str


@dataclass(frozen=True)
class SavedPrediction:
    reference: str
    prediction: str
    question: str | None


def read_items(path: str | Path) -> list[Item]:
    """A question/answer set: seed-format or {"question","answer"} jsonl, or a .docx file."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"data file {path} does not exist")
    items = _read_docx(path) if path.suffix.lower() == ".docx" else _read_jsonl_items(path)
    if not items:
        raise EvalError(f"{path} holds no question/answer pairs")
    return items


def read_saved_predictions(path: str | Path) -> list[SavedPrediction]:
    """Lines holding "reference" and "prediction" strings (and optionally "question")."""
    saved = []
    for where, record in _json_lines(Path(path)):
        reference, prediction = record.get("reference"), record.get("prediction")
        if not isinstance(reference, str) or not isinstance(prediction, str):
            raise EvalError(f'{where}: needs string fields "reference" and "prediction"')
        saved.append(SavedPrediction(reference, prediction, record.get("question")))
    if not saved:
        raise EvalError(f"{path} holds no predictions")
    return saved


def _json_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """prep.datafile's lines, its errors as EvalError."""
    try:
        yield from json_lines(path)
    except DataFileError as exc:
        raise EvalError(str(exc)) from exc


def _read_jsonl_items(path: Path) -> list[Item]:
    return [_item_from_record(where, record) for where, record in _json_lines(path)]


def _item_from_record(where: str, record: dict) -> Item:
    if "messages" in record:
        try:
            return Item(*question_answer(where, record))
        except DataFileError as exc:
            raise EvalError(str(exc)) from exc
    question, answer = record.get("question"), record.get("answer")
    if isinstance(question, str) and isinstance(answer, str):
        return Item(question, answer)
    raise EvalError(f'{where}: expected {{"messages": [...]}} or string "question" and "answer"')


def _read_docx(path: Path) -> list[Item]:
    """Paragraphs 问题：... and 答案：...; each runs on until the next field (text before the
    first 问题, such as a title, is skipped)."""
    import docx

    try:
        paragraphs = [p.text for p in docx.Document(str(path)).paragraphs]
    except Exception as exc:  # python-docx raises several unrelated types for a bad file
        raise EvalError(f"{path}: not a readable .docx file ({exc})") from exc
    pairs: list[tuple[list[str], list[str]]] = []  # (question lines, answer lines)
    for number, text in enumerate(paragraphs, 1):
        field = _DOCX_FIELD.match(text)
        if field and field.group(1) == "问题":
            pairs.append(([text[field.end() :]], []))
        elif field:
            if not pairs or pairs[-1][1]:
                raise EvalError(f"{path}: paragraph {number}: 答案 without a 问题 before it")
            pairs[-1][1].append(text[field.end() :])
        elif pairs:
            question, answer = pairs[-1]
            (answer if answer else question).append(text)
    items = [Item(_join(question), _join(answer)) for question, answer in pairs]
    unanswered = next((item.question for item in items if not item.answer), None)
    if unanswered is not None:
        raise EvalError(f"{path}: question without an answer: {unanswered!r}")
    return items


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip()
