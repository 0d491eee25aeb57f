"""``python -m eval judge``: the evaluation machine's run, rehearsed, failing on any breach.

From the server's start (``--launch``) or from now (``--url``): ``GET /`` must answer 200 within
the health limit and say ``batch``; every question of the data file goes in one ``POST /predict``
that must come back within the predict limit with as many strings as questions, in order. Then
the official score (RougeL-F1 over jieba words) and the throughput, as output tokens per second
(the model's tokenizer) and as response characters per second (what the judge may count).

Exit status: 0, 1 on a breach (each one named), 2 on an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from eval.errors import EvalError
from eval.metric import score_pair
from eval.readers import read_items
from eval.stats import mean
from eval.tokens import TokenCounter

BREACH = 1
FAILED = 2


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval judge", description=__doc__.split("\n\n")[0]
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a server already starting or started")
    where.add_argument("--launch", action="store_true", help="start python serve.py here")
    parser.add_argument("--server-python", default=sys.executable, help="interpreter for --launch")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--data", default="data.jsonl")
    parser.add_argument("--health-limit", type=float, default=180.0)
    parser.add_argument("--predict-limit", type=float, default=360.0)
    parser.add_argument("--min-official", type=float)
    parser.add_argument("--report", default="eval-out/judge.json")
    return parser


def wait_healthy(url: str, started: float, limit: float) -> tuple[float, dict | None]:
    """Seconds from ``started`` to the first 200 of GET / (or the limit), and its body."""
    while time.monotonic() - started < limit:
        with contextlib.suppress(httpx.TransportError):
            reply = httpx.get(url + "/", timeout=5)
            if reply.status_code == 200:
                return time.monotonic() - started, reply.json()
        time.sleep(0.2)
    return time.monotonic() - started, None


def rehearse(url: str, started: float, args: argparse.Namespace) -> dict:
    items = read_items(args.data)
    questions = [item.question for item in items]
    breaches: list[str] = []
    health_seconds, health = wait_healthy(url, started, args.health_limit)
    report: dict = {"health_seconds": round(health_seconds, 2), "status": health}
    if health is None:
        breaches.append(f"GET / not healthy within {args.health_limit:g} s")
        return {**report, "breaches": breaches}
    if health != {"status": "batch"}:
        breaches.append(f'GET / said {health}, not {{"status": "batch"}}: the judge sends singles')
    sent = time.monotonic()
    try:
        reply = httpx.post(url + "/predict", json={"prompt": questions}, timeout=args.predict_limit)
    except httpx.TimeoutException:
        breaches.append(f"POST /predict not answered within {args.predict_limit:g} s")
        return {**report, "breaches": breaches}
    except httpx.TransportError as exc:
        raise EvalError(f"POST {url}/predict failed: {exc}") from exc
    predict_seconds = time.monotonic() - sent
    report["predict_seconds"] = round(predict_seconds, 2)
    answers = reply.json().get("response") if reply.status_code == 200 else None
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        breaches.append(f"POST /predict answered {reply.status_code} without a list of strings")
        return {**report, "breaches": breaches}
    if len(answers) != len(questions):
        breaches.append(f"{len(answers)} answers for {len(questions)} questions")
        return {**report, "answers": len(answers), "breaches": breaches}
    model = httpx.get(url + "/info", timeout=10).json().get("model")
    tokens = sum(TokenCounter(model).count(answers))
    official = mean([score_pair(i.answer, a).official for i, a in zip(items, answers, strict=True)])
    if args.min_official is not None and official < args.min_official:
        breaches.append(f"official score {official:.4f} below {args.min_official:g}")
    return {
        **report,
        "answers": len(answers),
        "official": round(official, 4),
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / predict_seconds, 1),
        "chars_per_s": round(sum(map(len, answers)) / predict_seconds, 1),
        "breaches": breaches,
    }


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.url:
            report = rehearse(args.url.rstrip("/"), time.monotonic(), args)
        else:
            report = run_launched(args)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, ensure_ascii=False))
    for breach in report["breaches"]:
        print(f"BREACH: {breach}", file=sys.stderr)
    return BREACH if report["breaches"] else 0


def run_launched(args: argparse.Namespace) -> dict:
    from devtools.launcher import Server

    env = dict(pair.split("=", 1) for pair in args.env)
    with tempfile.TemporaryDirectory(prefix="judge-") as logs:
        server = Server(env, Path(logs) / "server.log", python=args.server_python)
        started = time.monotonic()
        try:
            server.spawn()  # not start(): the clock and the polling are the judge's
            return rehearse(server.url, started, args)
        finally:
            server.__exit__()
