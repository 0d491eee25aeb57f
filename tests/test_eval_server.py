"""The evaluator and the tuner end to end against the shared tiny-model server, and the
tuner with servers of its own (--launch) for engine settings."""

import json
import os
import re
import statistics
import subprocess
import sys

import pytest
from PIL import Image

from devtools.launcher import ROOT
from devtools.tiny_model import tiny_engine_env
from eval.metric import score_pair
from eval.readers import read_items
from eval.stats import nearest_rank
from eval.tokens import TokenCounter
from eval.trials import BRIEF_PROMPT
from qaserve.settings import Settings

N = 10


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *args]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600
    )


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def summary_row(stdout: str) -> list[str]:
    """The cells of the summary table's one data row."""
    return table_after(stdout, "")[0]


def table_after(stdout: str, title: str) -> list[list[str]]:
    """The data rows of the first table printed after the line that starts with ``title``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without the header and the line under it


def env_file_settings(path, monkeypatch) -> Settings:
    """The settings a server reads from the env file's lines."""
    for line in path.read_text("utf-8").splitlines()[1:]:
        monkeypatch.setenv(*line.split("=", 1))
    return Settings()


@pytest.fixture(scope="module")
def batch_run(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-batch")
    done = run_module(
        "eval",
        *("--url", server.url, "--data", "data.jsonl", "--limit", str(N)),
        *("--details", str(out / "details.jsonl"), "--report", str(out / "report")),
        *("--min-official", "0"),
    )
    assert done.returncode == 0, done.stderr
    return done, read_jsonl(out / "details.jsonl"), out


def test_batch_run_scores_what_the_server_answers(batch_run, client, tiny_model):
    done, details, _ = batch_run
    items = read_items(ROOT / "data.jsonl")[:N]
    assert "mode: batch (GET / said 'batch'), 10 questions in 1 request(s)" in done.stdout
    # The server answers the same batch the same way (greedy): the details hold its answers.
    answers = client.post("/predict", json={"prompt": [i.question for i in items]}).json()
    assert [d["prediction"] for d in details] == answers["response"]
    assert [d["reference"] for d in details] == [i.answer for i in items]
    for line in details:
        scores = score_pair(line["reference"], line["prediction"])
        assert (line["official"], line["cjk"]) == (scores.official, scores.cjk)
    counts = TokenCounter(str(tiny_model)).count(answers["response"])
    assert [d["answer_tokens"] for d in details] == counts
    cells = summary_row(done.stdout)
    official = sum(d["official"] for d in details) / N
    cjk = sum(d["cjk"] for d in details) / N
    assert cells[:3] == [str(N), f"{official:.4f}", f"{cjk:.4f}"]
    assert float(cells[5]) == pytest.approx(sum(counts) / N, abs=0.05)


def test_batch_throughput_divides_tokenizer_counts_by_both_clocks(batch_run):
    done, details, _ = batch_run
    tokens = sum(d["answer_tokens"] for d in details)
    # One batch: every item shares its request's client and server seconds.
    server_seconds, wall_seconds = details[0]["server_seconds"], details[0]["request_seconds"]
    assert {(d["server_seconds"], d["request_seconds"]) for d in details} == {
        (server_seconds, wall_seconds)
    }
    assert wall_seconds >= server_seconds  # the client waited at least as long
    wall = re.search(rf"tok/s wall: +{tokens} / ([\d.]+) s = ([\d.]+)", done.stdout)
    server = re.search(rf"tok/s server: {tokens} / ([\d.]+) s = ([\d.]+)", done.stdout)
    assert wall and server, done.stdout
    # Printed to 3 decimals (seconds) and 1 decimal (tokens/s).
    assert float(wall[1]) == pytest.approx(wall_seconds, abs=5e-4)
    assert float(wall[2]) == pytest.approx(tokens / wall_seconds, abs=0.051)
    assert float(server[1]) == pytest.approx(server_seconds, abs=5e-4)
    assert float(server[2]) == pytest.approx(tokens / server_seconds, abs=0.051)


def test_report_is_a_png(batch_run):
    _, _, out = batch_run
    with Image.open(out / "report" / "report.png") as image:
        assert image.format == "PNG"
        assert image.width > 600 and image.height > 300
        image.verify()


def test_concurrent_mode_gets_the_same_answers_and_exit_status(batch_run, server, tmp_path):
    _, batch_details, _ = batch_run
    achieved = sum(d["official"] for d in batch_details) / N
    details = tmp_path / "details.jsonl"
    done = run_module(
        "eval",
        *("--url", server.url, "--limit", str(N), "--details", str(details)),
        *("--mode", "concurrent", "--concurrency", "3", "--min-official", str(achieved + 0.001)),
    )
    assert done.returncode == 1, done.stderr
    assert "is below --min-official" in done.stderr
    assert "mode: concurrent, concurrency 3, 10 questions in 10 request(s)" in done.stdout
    assert "server seconds per request (X-Process-Seconds): mean" in done.stdout
    assert summary_row(done.stdout)[4] == "-"  # no server-side rate for overlapping singles
    singles = read_jsonl(details)
    assert [d["prediction"] for d in singles] == [d["prediction"] for d in batch_details]
    assert len({d["server_seconds"] for d in singles}) > 1  # each request has its own


def test_tune_runs_two_trials_resuming_from_its_log(
    server, client, tiny_model, tmp_path, monkeypatch
):
    log, env_out = tmp_path / "trials.jsonl", tmp_path / "best.env"
    prompt_before = client.get("/system_prompt").json()["system_prompt"]
    args = [
        *("--url", server.url, "--limit", "6", "--budgets", "8", "--sentences", "0"),
        *("--trim-examples", "1", "--system-prompts", "brief", "--propose-budgets", "90"),
        *("--log", str(log), "--env-out", str(env_out), "--min-official", "0"),
    ]
    first = run_module("eval.tune", *args, "--max-trials", "1", "--repeats", "1")
    assert first.returncode == 0, first.stderr
    assert "1 run(s) done, 0 taken from" in first.stdout
    first_line = log.read_text("utf-8")

    # Both trials, twice each: only the three missing runs run.
    second = run_module("eval.tune", *args, "--repeats", "2")
    assert second.returncode == 0, second.stderr
    assert "3 run(s) done, 1 taken from" in second.stdout
    assert log.read_text("utf-8").startswith(first_line)
    records = read_jsonl(log)
    runs = [(r["trial"]["source"], r["run"]) for r in records]
    assert runs == [("grid", 1), ("p90", 1), ("grid", 2), ("p90", 2)]  # rounds of the trials

    # The data-driven trial: the p90 of the references' token lengths (6 questions, none
    # matching a rule, so all "default"; rank ceil(5.4) = 6, the longest).
    items = read_items(ROOT / "data.jsonl")[:6]
    lengths = TokenCounter(str(tiny_model)).count([item.answer for item in items])
    assert records[1]["trial"]["max_new_tokens"] == nearest_rank(lengths, 90) == max(lengths)
    assert "data-driven budgets against trial 1" in second.stdout
    assert "Pareto front" in second.stdout
    assert client.get("/system_prompt").json()["system_prompt"] == prompt_before

    medians = {
        source: statistics.median(r["tokens_per_s_wall"] for r in records if r["trial"] == trial)
        for source, trial in {r["trial"]["source"]: r["trial"] for r in records}.items()
    }
    best = max(records, key=lambda r: medians[r["trial"]["source"]])
    settings = env_file_settings(env_out, monkeypatch)
    assert settings.max_new_tokens == best["trial"]["max_new_tokens"]
    assert settings.system_prompt == BRIEF_PROMPT
    assert settings.trim_examples is True and settings.max_sentences == 0
    assert [rule.name for rule in settings.budget_rules] == ["code", "long"]


def test_tune_refuses_an_engine_setting_the_server_at_url_does_not_run(server):
    done = run_module("eval.tune", "--url", server.url, "--engine", "VLLM_MAX_NUM_SEQS=7")
    assert done.returncode == 2
    assert "needs a server started with VLLM_MAX_NUM_SEQS=7" in done.stderr
    assert "use --launch" in done.stderr


def test_tune_launches_a_server_per_engine_setting_and_ranks_by_the_median(
    tiny_model, tmp_path, monkeypatch
):
    log, env_out = tmp_path / "trials.jsonl", tmp_path / "best.env"
    done = run_module(
        "eval.tune",
        *("--launch", "--engine", "VLLM_MAX_NUM_SEQS=2,32", "--repeats", "2"),
        *("--limit", "8", "--budgets", "16", "--rule-budget", "code=16", "--rule-budget"),
        *("long=16", "--sentences", "0", "--trim-examples", "0", "--propose-budgets", "none"),
        *("--log", str(log), "--env-out", str(env_out)),
        env=tiny_engine_env(tiny_model, WARMUP_NUM_SAMPLES="1"),
    )
    assert done.returncode == 0, done.stderr + done.stdout
    # One server per engine setting, kept for both runs of its trial.
    assert done.stdout.count("starting a server with") == 2
    assert {path.name for path in tmp_path.glob("server-*.log")} == {"server-1.log", "server-2.log"}
    records = read_jsonl(log)
    assert [(r["trial"]["start"], r["run"]) for r in records] == [
        ([["VLLM_MAX_NUM_SEQS", "2"]], 1),
        ([["VLLM_MAX_NUM_SEQS", "2"]], 2),
        ([["VLLM_MAX_NUM_SEQS", "32"]], 1),
        ([["VLLM_MAX_NUM_SEQS", "32"]], 2),
    ]
    # What each server ran with, as its /info says.
    assert [r["server"] for r in records] == [{"VLLM_MAX_NUM_SEQS": n} for n in (2, 2, 32, 32)]

    speeds = {
        seqs: [r["tokens_per_s_wall"] for r in records if r["trial"]["start"][0][1] == seqs]
        for seqs in ("2", "32")
    }
    ranked = table_after(done.stdout, "ranking by median tok/s wall")
    order = sorted(speeds, key=lambda seqs: statistics.median(speeds[seqs]), reverse=True)
    assert [row[3].split()[0] for row in ranked] == [f"VLLM_MAX_NUM_SEQS={s}" for s in order]
    for row, seqs in zip(ranked, order, strict=True):
        # tok/s wall (median), min, max, runs
        expected = [statistics.median(speeds[seqs]), min(speeds[seqs]), max(speeds[seqs])]
        assert [float(cell) for cell in row[6:9]] == pytest.approx(expected, abs=0.051)
        assert row[-1] == "2"

    header = env_out.read_text("utf-8").splitlines()[0]
    assert f"{statistics.median(speeds[order[0]]):.1f} tok/s wall" in header
    settings = env_file_settings(env_out, monkeypatch)
    assert settings.vllm_max_num_seqs == int(order[0])
    assert settings.max_new_tokens == 16 and settings.trim_examples is False
