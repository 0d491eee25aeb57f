"""One evaluation's numbers: per-item scores and lengths, throughput, latency.

Throughput counts the answers' tokens with the model's tokenizer and divides them two
ways. Over wall seconds: the client-side time during which at least one request was in
flight. Over server seconds: the server's X-Process-Seconds, which only describe the
whole run when every request was in flight together (one batch, or batches sent at once),
where the longest of them spans the server's work; overlapping single requests get the
mean per-request server seconds instead, and no server-side rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from eval.client import Reply
from eval.metric import score_pair
from eval.readers import Item
from eval.stats import mean, nearest_rank, union_seconds
from eval.tokens import TokenCounter


@dataclass(frozen=True)
class Row:
    index: int
    question: str
    reference: str
    prediction: str
    official: float
    cjk: float
    answer_tokens: int
    reference_tokens: int
    request_seconds: float
    server_seconds: float | None


@dataclass(frozen=True)
class Throughput:
    answer_tokens: int
    generated_tokens: int | None  # sum of X-Output-Tokens: generated, including trimmed text
    requests: int
    wall_seconds: float
    server_seconds: float | None  # None unless every request was in flight together
    server_seconds_per_request: float | None

    @property
    def wall_rate(self) -> float:
        return self.answer_tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def server_rate(self) -> float | None:
        if not self.server_seconds:
            return None
        return self.answer_tokens / self.server_seconds


@dataclass(frozen=True)
class Evaluation:
    rows: list[Row]
    throughput: Throughput
    latencies: list[float]  # client seconds per request
    official_ceiling: float  # mean official score of each reference against itself

    @property
    def official(self) -> float:
        return mean([row.official for row in self.rows])

    @property
    def cjk(self) -> float:
        return mean([row.cjk for row in self.rows])

    @property
    def mean_answer_tokens(self) -> float:
        return mean([row.answer_tokens for row in self.rows])

    def latency(self, percent: float) -> float:
        return nearest_rank(self.latencies, percent)


def build_evaluation(items: list[Item], replies: list[Reply], counter: TokenCounter) -> Evaluation:
    by_index = {
        i: (text, reply)
        for reply in replies
        for i, text in zip(reply.indices, reply.texts, strict=True)
    }
    if sorted(by_index) != list(range(len(items))):
        raise ValueError("replies do not cover every item exactly once")
    predictions = [by_index[i][0] for i in range(len(items))]
    answer_tokens = counter.count(predictions)
    reference_tokens = counter.count([item.answer for item in items])
    rows = []
    for i, item in enumerate(items):
        reply = by_index[i][1]
        scores = score_pair(item.answer, predictions[i])
        rows.append(
            Row(
                index=i,
                question=item.question,
                reference=item.answer,
                prediction=predictions[i],
                official=scores.official,
                cjk=scores.cjk,
                answer_tokens=answer_tokens[i],
                reference_tokens=reference_tokens[i],
                request_seconds=reply.latency,
                server_seconds=reply.server_seconds,
            )
        )
    latencies = [reply.latency for reply in replies]
    # Below 1 when references lack ASCII terms: the most any server can score on this set.
    ceiling = mean([score_pair(item.answer, item.answer).official for item in items])
    return Evaluation(rows, measure_throughput(replies, sum(answer_tokens)), latencies, ceiling)


def measure_throughput(replies: list[Reply], answer_tokens: int) -> Throughput:
    server = [r.server_seconds for r in replies]
    reported = all(seconds is not None for seconds in server)
    generated = [r.output_tokens for r in replies]
    return Throughput(
        answer_tokens=answer_tokens,
        generated_tokens=sum(generated) if None not in generated else None,
        requests=len(replies),
        wall_seconds=union_seconds([(r.started, r.finished) for r in replies]),
        server_seconds=max(server) if reported and _all_in_flight_together(replies) else None,
        server_seconds_per_request=mean(server) if reported else None,
    )


def _all_in_flight_together(replies: list[Reply]) -> bool:
    """True when every request was sent before the first answer came back."""
    return max(r.started for r in replies) <= min(r.finished for r in replies)
