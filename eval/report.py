"""What the evaluator prints and saves: the summary table, throughput lines, details jsonl."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from eval.metric import METRICS_NOTE
from eval.results import Evaluation, Throughput


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table, columns padded to line up in a terminal."""
    cells = [headers, *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[col]) for row in cells) for col in range(len(headers))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines = [f"| {line} |" for line in lines]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def summary(evaluation: Evaluation, mode: str, tokenizer: str) -> str:
    """The table the issue asks for, then how each number was measured."""
    t = evaluation.throughput
    headers = ["n", "official", "cjk", "tok/s wall", "tok/s server", "mean answer tok"]
    headers += ["p50 latency s", "p95 latency s"]
    row = [len(evaluation.rows), evaluation.official, evaluation.cjk, t.wall_rate, t.server_rate]
    row += [evaluation.mean_answer_tokens, evaluation.latency(50), evaluation.latency(95)]
    lines = [f"mode: {mode}, {len(evaluation.rows)} questions in {t.requests} request(s)"]
    lines += [table(headers, [row]), "", *throughput_lines(t, tokenizer), "", METRICS_NOTE]
    lines.append(
        f"official ceiling on this set (each reference scored against itself): "
        f"{evaluation.official_ceiling:.4f}"
    )
    return "\n".join(lines)


def throughput_lines(t: Throughput, tokenizer: str) -> list[str]:
    generated = (
        f"; the server reports {t.generated_tokens} generated (X-Output-Tokens, "
        "including text trimmed after generation)"
        if t.generated_tokens is not None
        else ""
    )
    lines = [
        f"answer tokens: {t.answer_tokens}, counted with the model's tokenizer "
        f"({tokenizer}){generated}",
        f"tok/s wall:   {t.answer_tokens} / {t.wall_seconds:.3f} s = {t.wall_rate:.1f}, "
        "client clock while any request was in flight",
    ]
    if t.server_rate is not None:
        lines.append(
            f"tok/s server: {t.answer_tokens} / {t.server_seconds:.3f} s = {t.server_rate:.1f}, "
            f"X-Process-Seconds of the longest of {t.requests} request(s) sent together"
        )
    elif t.server_seconds_per_request is not None:
        lines.append(
            "tok/s server: not derived, the requests were not all in flight together; "
            "server seconds per request (X-Process-Seconds): "
            f"mean {t.server_seconds_per_request:.3f} s over {t.requests} requests"
        )
    else:
        lines.append("tok/s server: none, the server sends no X-Process-Seconds")
    return lines


def write_details(path: str | Path, records: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def detail_records(evaluation: Evaluation) -> list[dict]:
    return [asdict(row) for row in evaluation.rows]
