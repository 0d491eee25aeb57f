"""The evaluator without a server: readers, the score command, statistics, the tuner's
ranking and the settings it refuses before starting anything."""

import json
import subprocess
import sys

import docx
import pytest

from devtools.launcher import ROOT
from eval.errors import EvalError
from eval.readers import Item, read_items
from eval.stats import nearest_rank, union_seconds
from eval.trials import Trial
from eval.tune import Outcome, pareto_front, ranking
from tests.test_eval_metric import PINNED


def run_eval(*args: str, module: str = "eval") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")


def test_default_data_set_is_large_and_complete():
    items = read_items(ROOT / "data.jsonl")
    assert len(items) >= 300
    assert all(item.question.strip() and item.answer.strip() for item in items)
    assert any("代码" in item.question or "核函数" in item.question for item in items)


def test_seed_and_plain_jsonl_read_the_same_pairs(tmp_path):
    seed, plain = tmp_path / "seed.jsonl", tmp_path / "plain.jsonl"
    write_jsonl(
        seed,
        [
            {
                "messages": [
                    {"role": "user", "content": "Q1"},
                    {"role": "assistant", "content": "A1"},
                ]
            },
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "Q2"},
                    {"role": "assistant", "content": "A2"},
                ]
            },
        ],
    )
    write_jsonl(plain, [{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": "A2"}])
    expected = [Item("Q1", "A1"), Item("Q2", "A2")]
    assert read_items(seed) == expected
    assert read_items(plain) == expected


def test_a_bad_line_is_named(tmp_path):
    data = tmp_path / "bad.jsonl"
    write_jsonl(data, [{"question": "Q1", "answer": "A1"}, {"question": "Q2"}])
    with pytest.raises(EvalError, match=r"bad.jsonl:2: expected"):
        read_items(data)


def test_docx_questions_and_multi_paragraph_answers(tmp_path):
    document = docx.Document()
    for text in [
        "CUDA 练习题",  # a title before the first question is skipped
        "问题：什么是warp？",
        "答案：warp 是 32 个线程。",
        "它们同步执行同一条指令。",
        "问题: 什么是线程块？",
        "答案:线程块是一组可以协作的线程。",
    ]:
        document.add_paragraph(text)
    path = tmp_path / "qa.docx"
    document.save(path)
    assert read_items(path) == [
        Item("什么是warp？", "warp 是 32 个线程。\n它们同步执行同一条指令。"),
        Item("什么是线程块？", "线程块是一组可以协作的线程。"),
    ]


def test_docx_question_without_answer_is_an_error(tmp_path):
    document = docx.Document()
    document.add_paragraph("问题：什么是warp？")
    path = tmp_path / "qa.docx"
    document.save(path)
    with pytest.raises(EvalError, match="question without an answer"):
        read_items(path)


def test_score_command_scores_saved_predictions_in_order(tmp_path):
    saved = tmp_path / "saved.jsonl"
    write_jsonl(saved, [{"reference": ref, "prediction": pred} for _, ref, pred, _, _ in PINNED])
    details = tmp_path / "scores.jsonl"
    done = run_eval("score", str(saved), "--details", str(details))
    assert done.returncode == 0, done.stderr
    official = sum(case[3] for case in PINNED) / len(PINNED)
    cjk = sum(case[4] for case in PINNED) / len(PINNED)
    assert f"| {len(PINNED)} | {official:.4f}   | {cjk:.4f} |" in done.stdout
    assert "keeps only [a-z0-9]+ tokens" in done.stdout
    lines = [json.loads(line) for line in details.read_text("utf-8").splitlines()]
    assert [(line["reference"], line["prediction"]) for line in lines] == [c[1:3] for c in PINNED]
    assert [line["official"] for line in lines] == pytest.approx([c[3] for c in PINNED])
    assert [line["cjk"] for line in lines] == pytest.approx([c[4] for c in PINNED])


def test_score_command_exit_status(tmp_path):
    saved = tmp_path / "saved.jsonl"
    write_jsonl(saved, [{"reference": "一个warp有32个线程", "prediction": "warp"}])
    # official: [warp, 32] against [warp]: P 1, R 1/2, F 2/3.
    assert run_eval("score", str(saved), "--min-official", "0.66").returncode == 0
    below = run_eval("score", str(saved), "--min-official", "0.67")
    assert below.returncode == 1 and "below --min-official 0.67" in below.stderr
    write_jsonl(saved, [{"reference": "x"}])
    broken = run_eval("score", str(saved))
    assert broken.returncode == 2 and "saved.jsonl:1" in broken.stderr


def test_unreachable_server_is_a_clear_error():
    done = run_eval("--url", "http://127.0.0.1:9", "--wait", "1", "--limit", "1")
    assert done.returncode == 2
    assert "not ready within 1 s" in done.stderr and "Traceback" not in done.stderr


def test_nearest_rank_percentiles():
    values = [3, 1, 4, 1, 5, 9, 2, 6]  # sorted: 1 1 2 3 4 5 6 9
    assert nearest_rank(values, 50) == 3  # rank ceil(4.0) = 4
    assert nearest_rank(values, 90) == 9  # rank ceil(7.2) = 8
    assert nearest_rank(values, 10) == 1  # rank ceil(0.8) = 1


def test_union_seconds_counts_overlaps_once():
    assert union_seconds([(0, 2), (1, 3), (5, 6)]) == 4  # [0, 3] and [5, 6]
    assert union_seconds([(0, 10), (2, 3)]) == 10


def outcome(number: int, official: float, *speeds: float) -> Outcome:
    trial = Trial(number, (), 0, False, "server")
    runs = [{"official": official, "tokens_per_s_wall": speed} for speed in speeds]
    return Outcome(number, trial, runs)


def test_pareto_front_keeps_only_undominated_trials():
    slow_good, fast_poor, dominated, tie = (
        outcome(1, 0.5, 100),
        outcome(2, 0.3, 300),
        outcome(3, 0.3, 200),
        outcome(4, 0.5, 100),
    )
    front = pareto_front([slow_good, fast_poor, dominated, tie])
    assert [o.number for o in front] == [2, 1, 4]  # fastest first; equal trials both stay


def test_ranking_goes_by_the_median_run_and_keeps_the_spread():
    lucky = outcome(1, 0.4, 90, 100, 400)  # one fast run, the others slow
    steady = outcome(2, 0.4, 190, 200, 210)
    poor = outcome(3, 0.1, 500, 500, 500)
    assert [o.number for o in ranking([lucky, steady, poor], minimum=0.3)] == [2, 1]
    assert (steady.speed, steady.speed_range) == (200, (190, 210))
    assert (lucky.speed, lucky.speed_range) == (100, (90, 400))
    assert outcome(4, 0.4, 100, 300).speed == 200  # an even count: the mean of the middle two


@pytest.mark.parametrize(
    ("engine", "says"),
    [
        ("VLLM_MAX_NUM_SEQS=64,0", "'0' is not a valid VLLM_MAX_NUM_SEQS: Input should be greater"),
        ("GPU_MEMORY_UTILIZATION=1.5", "'1.5' is not a valid GPU_MEMORY_UTILIZATION"),
        ("MAX_NEW_TOKENS=64", "MAX_NEW_TOKENS is a per-request knob (--budgets)"),
        ("NO_SUCH_SETTING=1", "expected NAME=V1,V2 with NAME a setting of the server"),
        ("VLLM_MAX_NUM_SEQS", "expected NAME=V1,V2"),
    ],
)
def test_tune_refuses_a_bad_engine_setting_before_starting_anything(engine, says):
    done = run_eval("--launch", "--engine", engine, module="eval.tune")
    assert done.returncode == 2
    assert says in done.stderr and "starting a server" not in done.stdout


def test_tune_refuses_an_engine_setting_given_twice():
    twice = ["--engine", "VLLM_MAX_NUM_SEQS=8", "--engine", "vllm_max_num_seqs=16"]
    done = run_eval("--launch", *twice, module="eval.tune")
    assert done.returncode == 2
    assert "error: --engine: VLLM_MAX_NUM_SEQS given more than once" in done.stderr
    assert "starting a server" not in done.stdout
