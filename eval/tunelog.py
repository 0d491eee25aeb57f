"""The tuner's record of trials: one JSON line per finished run of a trial, so a sweep can
resume (and a rerun with more --repeats adds only the missing runs).

Every line carries the signature of what was measured (data, model); a log written for
something else is refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from eval.errors import EvalError
from eval.readers import Item
from eval.results import Evaluation
from eval.trials import Trial


def signature(items: list[Item], model: str) -> dict:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.question, item.answer], ensure_ascii=False).encode())
    return {"data_sha256": digest.hexdigest()[:16], "n": len(items), "model": model}


class TrialLog:
    def __init__(self, path: str | Path, run_signature: dict):
        self.path = Path(path)
        self.signature = run_signature
        self.records = self._load()

    def _load(self) -> list[dict]:
        if not self.path.is_file():
            return []
        records = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{self.path}:{number}: not JSON ({exc})") from exc
            if record.get("signature") != self.signature:
                raise EvalError(
                    f"{self.path}:{number} was measured on {record.get('signature')}, this run "
                    f"is {self.signature}; use another --log"
                )
            records.append(record)
        return records

    def runs(self, trial: Trial) -> list[dict]:
        """The trial's runs so far, in the order they ran."""
        key = trial.key()
        return [record for record in self.records if record["key"] == key]

    def add(self, trial: Trial, evaluation: Evaluation, server: dict) -> dict:
        """One run; ``server``: the trial's start settings as the server ran them."""
        t = evaluation.throughput
        record = {
            "signature": self.signature,
            "key": trial.key(),
            "trial": asdict(trial),
            "run": len(self.runs(trial)) + 1,
            "server": server,
            "official": evaluation.official,
            "cjk": evaluation.cjk,
            "tokens_per_s_wall": t.wall_rate,
            "tokens_per_s_server": t.server_rate,
            "mean_answer_tokens": evaluation.mean_answer_tokens,
            "answer_tokens": t.answer_tokens,
            "wall_seconds": t.wall_seconds,
            "server_seconds": t.server_seconds,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.records.append(record)
        return record
