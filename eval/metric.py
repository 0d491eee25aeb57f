"""RougeL-F1 over jieba tokens: the competition's formula, and a variant that keeps Chinese.

``official`` is the reference formula to the letter: rouge_score's RougeScorer with its
default tokenizer, called as ``score(" ".join(jieba.lcut(reference)), " ".join(jieba.lcut(
prediction)))``. That tokenizer lower-cases and keeps only ``[a-z0-9]+`` runs, so every
Chinese token is dropped and only the ASCII terms (CUDA, threadIdx, 32 ...) count.
``cjk`` is the same LCS F-measure from the same library with a tokenizer that keeps the
letters and digits of every script, Chinese included; on ASCII-only text the two agree.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import jieba
from rouge_score import rouge_scorer, tokenizers

jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter would mix into reports

# The default tokenizer's [^a-z0-9]+ separator, widened to let letters of any script through.
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")


class KeepCjkTokenizer(tokenizers.Tokenizer):
    """rouge_score's default tokenization (lower-case, split at non-alphanumerics), CJK kept."""

    def tokenize(self, text: str) -> list[str]:
        return [token for token in _NOT_LETTER_OR_DIGIT.split(text.lower()) if token]


_OFFICIAL = rouge_scorer.RougeScorer(["rougeL"])
_CJK = rouge_scorer.RougeScorer(["rougeL"], tokenizer=KeepCjkTokenizer())

METRICS_NOTE = (
    "official = the competition's formula: rouge_score RougeL F1 over jieba tokens with "
    "rouge_score's default tokenizer, which keeps only [a-z0-9]+ tokens, so Chinese words are "
    "dropped and only ASCII terms count (identical Chinese text scores 0). cjk = the same LCS "
    "F-measure with Chinese (letters and digits of every script) kept."
)


@dataclass(frozen=True)
class PairScore:
    official: float
    cjk: float


def segment(text: str) -> str:
    """jieba words joined by spaces, as the reference formula feeds them to rouge_score."""
    return " ".join(jieba.lcut(text))


def score_pair(reference: str, prediction: str) -> PairScore:
    """Both metrics, segmenting each text once (jieba is the slow part).

    rouge_score answers an int 0 when a side has no tokens; float() only unifies the type.
    """
    if not reference or not prediction:
        return PairScore(0.0, 0.0)
    target, candidate = segment(reference), segment(prediction)
    return PairScore(
        official=float(_OFFICIAL.score(target, candidate)["rougeL"].fmeasure),
        cjk=float(_CJK.score(target, candidate)["rougeL"].fmeasure),
    )
