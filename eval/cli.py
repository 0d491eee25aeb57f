"""``python -m eval``: evaluate a running server; ``python -m eval score FILE``: offline scores.

Exit status: 0, 1 when the official score is below --min-official, 2 on an error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from clients.settings import ClientSettings
from eval.client import ServerClient, batch_request, single_requests
from eval.errors import EvalError
from eval.metric import METRICS_NOTE, score_pair
from eval.readers import Item, read_items, read_saved_predictions
from eval.report import detail_records, summary, table, write_details
from eval.results import build_evaluation
from eval.stats import mean
from eval.tokens import TokenCounter, tokenizer_folder

BELOW_THRESHOLD = 1
FAILED = 2


def _env_api_key() -> str | None:
    key = ClientSettings().qaserve_api_key
    return key.get_secret_value() if key else None


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the server and the questions are; shared with the tuner."""
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument(
        "--api-key",
        default=_env_api_key(),
        help="bearer key, for a server with PROTECT_PREDICT=1 (default: $QASERVE_API_KEY)",
    )
    parser.add_argument("--data", default="data.jsonl", help="seed/question-answer jsonl or .docx")
    parser.add_argument("--limit", type=int, default=0, help="use the first N questions (0: all)")
    parser.add_argument("--tokenizer", help="model tokenizer folder (default: /info's model)")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for GET /")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per /predict call")
    parser.add_argument("--min-official", type=float, help="minimum mean official score")


RUN_MODES = ("auto", "batch", "concurrent")


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Evaluate a running /predict server: accuracy and throughput. "
        "'python -m eval score FILE' scores saved predictions without a server.",
    )
    add_server_arguments(parser)
    mode_help = "auto: one batch when GET / says batch, else single requests"
    parser.add_argument("--mode", choices=RUN_MODES, default="auto", help=mode_help)
    parser.add_argument("--concurrency", type=int, default=64, help="single requests in flight")
    parser.add_argument("--details", default="eval-out/details.jsonl", help="per-item jsonl")
    parser.add_argument("--report", metavar="DIR", help="also write DIR/report.png")
    return parser


def score_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval score",
        description="Score saved predictions: a jsonl of {reference, prediction[, question]}.",
    )
    parser.add_argument("file")
    parser.add_argument("--details", metavar="OUT", help="write each line's scores, in order")
    parser.add_argument("--min-official", type=float, help="minimum mean official score")
    return parser


def load_items(path: str, limit: int) -> list[Item]:
    if limit < 0:
        raise EvalError("--limit must be 0 (all) or positive")
    items = read_items(path)
    return items[:limit] if limit else items


def server_tokenizer(server: ServerClient, explicit: str | None) -> TokenCounter:
    """The tokenizer of the model the server runs (GET /info), or --tokenizer."""
    info = server.get_json("/info") if not explicit else None
    return TokenCounter(tokenizer_folder(explicit, (info or {}).get("model")))


def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise EvalError("--concurrency must be at least 1")
    items = load_items(args.data, args.limit)
    server = ServerClient(args.url, args.api_key)
    status = server.wait_ready(args.wait)
    mode = args.mode if args.mode != "auto" else ("batch" if status == "batch" else "concurrent")
    counter = server_tokenizer(server, args.tokenizer)
    questions = [item.question for item in items]
    if mode == "batch":
        requests, concurrency = [batch_request(questions)], 1
    else:
        requests, concurrency = single_requests(questions), args.concurrency
    replies = server.send_all(requests, concurrency, args.timeout, "answers")
    evaluation = build_evaluation(items, replies, counter)
    write_details(args.details, detail_records(evaluation))
    label = f"{mode} (GET / said {status!r})" if args.mode == "auto" else mode
    if mode == "concurrent":
        label += f", concurrency {concurrency}"
    print(summary(evaluation, label, counter.folder))
    print(f"details: {args.details}")
    if args.report:
        from eval.plot import write_report  # matplotlib loads only when a plot is wanted

        print(f"report: {write_report(evaluation, args.report)}")
    return threshold_status(evaluation.official, args.min_official)


def score(args: argparse.Namespace) -> int:
    saved = read_saved_predictions(args.file)
    scores = [score_pair(s.reference, s.prediction) for s in saved]
    official, cjk = mean([s.official for s in scores]), mean([s.cjk for s in scores])
    print(table(["n", "official", "cjk"], [[len(saved), official, cjk]]))
    print(METRICS_NOTE)
    if args.details:
        pairs = zip(saved, scores, strict=True)
        write_details(args.details, [{**asdict(s), **asdict(p)} for s, p in pairs])
        print(f"details: {args.details}")
    return threshold_status(official, args.min_official)


def threshold_status(official: float, minimum: float | None) -> int:
    if minimum is None or official >= minimum:
        return 0
    print(f"official {official:.4f} is below --min-official {minimum:g}", file=sys.stderr)
    return BELOW_THRESHOLD


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["judge"]:
            from eval.judge import main as judge

            return judge(argv[1:])
        if argv[:1] == ["score"]:
            return score(score_parser().parse_args(argv[1:]))
        return run(run_parser().parse_args(argv))
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
