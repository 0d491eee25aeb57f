"""The evaluator's metrics, pinned on hand-checked pairs, and parity with the reference formula.

Each expected value below is worked out by hand from jieba's words: the official tokenizer
keeps only lower-cased [a-z0-9]+ runs, the cjk one keeps every letter or digit; then
RougeL F1 = 2PR/(P+R) with P = LCS/len(prediction), R = LCS/len(reference).
"""

import itertools

import jieba
import pytest
from rouge_score import rouge_scorer

from devtools.launcher import ROOT
from eval.metric import score_pair
from eval.readers import read_items

PINNED = [
    # pure Chinese. ref 共享内存|比|全局|内存|快 (5), pred 共享内存|比|寄存器|慢 (4): no
    # official token at all -> 0; cjk LCS 共享内存 比 = 2, P 2/4, R 2/5, F = 0.4/0.9 = 4/9.
    ("pure Chinese", "共享内存比全局内存快", "共享内存比寄存器慢", 0.0, 4 / 9),
    # mixed. ref CUDA|的|warp|包含|32|个|线程, pred 一个|warp|有|32|个|线程.
    # official: [cuda, warp, 32] vs [warp, 32]: LCS 2, P 1, R 2/3, F = 4/5.
    # cjk: 7 vs 6 tokens, LCS warp 32 个 线程 = 4, P 4/6, R 4/7, F = 16/26 = 8/13.
    ("mixed", "CUDA的warp包含32个线程", "一个warp有32个线程", 0.8, 8 / 13),
    # pure English: both tokenizers see [shared memory is faster than global memory] (7)
    # and [memory is slower than registers] (5): LCS memory is than = 3, P 3/5, R 3/7, F 1/2.
    (
        "pure English",
        "Shared memory is faster than global memory.",
        "memory is slower than registers",
        0.5,
        0.5,
    ),
    ("empty prediction", "共享内存", "", 0.0, 0.0),
    ("empty reference", "", "warp", 0.0, 0.0),
    # identical Chinese: nothing survives the official tokenizer, so even a perfect answer is 0.
    ("identical Chinese", "共享内存比全局内存快", "共享内存比全局内存快", 0.0, 1.0),
    ("identical mixed", "一个warp有32个线程", "一个warp有32个线程", 1.0, 1.0),
    ("punctuation only", "。，！？", "。，！？", 0.0, 0.0),
    # punctuation is no token for either: 线程块 matches whatever ends the sentence.
    ("punctuation differs", "线程块。", "线程块！", 0.0, 1.0),
]


@pytest.mark.parametrize(
    ("reference", "prediction", "official", "cjk"),
    [case[1:] for case in PINNED],
    ids=[case[0] for case in PINNED],
)
def test_pinned_pairs(reference, prediction, official, cjk):
    scores = score_pair(reference, prediction)
    assert scores.official == pytest.approx(official, abs=1e-12)
    assert scores.cjk == pytest.approx(cjk, abs=1e-12)


def reference_formula(reference: str, prediction: str) -> float:
    """The competition's scoring code, as the issue states it."""
    if not reference or not prediction:
        return 0
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    ref = " ".join(jieba.lcut(reference))
    pred = " ".join(jieba.lcut(prediction))
    return scorer.score(ref, pred)["rougeL"].fmeasure


def test_official_is_the_reference_formula_bit_for_bit():
    items = read_items(ROOT / "data.jsonl")[:120]
    # Each answer against another one, a cut one, and its own question: every kind of overlap.
    pairs = [(a.answer, b.answer) for a, b in itertools.pairwise(items)]
    pairs += [(item.answer, item.answer[: len(item.answer) // 2]) for item in items]
    pairs += [(item.answer, item.question) for item in items]
    assert sum(reference_formula(r, p) > 0 for r, p in pairs) > 50  # the pairs do overlap
    for reference, prediction in pairs:
        assert score_pair(reference, prediction).official == reference_formula(
            reference, prediction
        )
