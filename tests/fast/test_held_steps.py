"""Steps held in the engine core (held_steps.py), against a scheduler that makes one output per
unfinished request per step: every token id leaves the engine once and in order, whatever
was held; a marked request leaves in two outputs (its first and its last) until its mark,
after which its held ids go out with the next output and every later step passes; aborted
requests are forgotten; unmarked ones pass unchanged. The real-engine checks (answers with
held steps equal to streamed ones, and a /predict deadline's cut answers carry the held
ids, on both stacks) are tests/test_openai.py's decoded-once test and
tests/test_competition.py's deadline test."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from qaserve.engine.held_steps import HOLD_UNTIL, HeldSteps, holding


@dataclass
class Output:  # the fields of vLLM's EngineCoreOutput that holding reads
    request_id: str
    new_token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class Outputs:  # vLLM's EngineCoreOutputs, one client's part of a step
    outputs: list[Output] = field(default_factory=list)
    finished_requests: set[str] | None = None
    scheduler_stats: object = None


@dataclass
class Sampling:
    extra_args: dict | None


@dataclass
class Request:
    request_id: str
    sampling_params: Sampling


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StepScheduler:
    """vLLM's scheduler as far as holding sees it: each step, one token for every unfinished
    request, each request finishing after its count (finish_requests aborts)."""

    def __init__(self, counts: dict[str, int], seed: int = 0) -> None:
        self.counts = counts
        self.made = dict.fromkeys(counts, 0)
        self.rng = random.Random(seed)
        self.aborted: set[str] = set()

    def add_request(self, request) -> None:
        pass

    def finish_requests(self, request_ids, finished_status):
        if request_ids is None:
            request_ids = self.counts
        self.aborted.update([request_ids] if isinstance(request_ids, str) else request_ids)
        return finished_status

    def update_from_output(self, scheduler_output, model_runner_output):
        step = []
        for request_id, count in self.counts.items():
            if self.made[request_id] < count and request_id not in self.aborted:
                self.made[request_id] += 1
                finish = "length" if self.made[request_id] == count else None
                step.append(Output(request_id, [self.rng.randrange(1000)], finish))
        return {0: Outputs(step)} if step else {}

    def unfinished(self) -> bool:
        return any(self.made[r] < n for r, n in self.counts.items() if r not in self.aborted)


def run(counts: dict[str, int], marks: dict[str, float], clock: Clock, tick: float = 0.0):
    """The outputs sent, step by step, by the holding scheduler; ``tick``: seconds per step."""
    scheduler = holding(StepScheduler)(counts)
    scheduler.held_steps = HeldSteps(clock)
    for request_id in counts:
        extra = {HOLD_UNTIL: marks[request_id]} if request_id in marks else None
        scheduler.add_request(Request(request_id, Sampling(extra)))
    steps = []
    while scheduler.unfinished():
        sent = scheduler.update_from_output(None, None)
        steps.append(list(sent[0].outputs) if sent else [])
        clock.now += tick
    return steps


def tokens(steps) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for step in steps:
        for output in step:
            seen.setdefault(output.request_id, []).extend(output.new_token_ids)
    return seen


def outputs_of(steps, request_id: str) -> list[Output]:
    return [output for step in steps for output in step if output.request_id == request_id]


def test_a_marked_request_leaves_in_its_first_and_last_outputs_with_every_id_in_order():
    counts = {"one": 1, "two": 2, "three": 3, "forty": 40, "unmarked": 30}
    marks = dict.fromkeys(("one", "two", "three", "forty"), math.inf)
    steps = run(counts, marks, Clock())
    assert tokens(steps) == tokens(run(counts, {}, Clock()))  # same seed, nothing held
    for request_id, count in counts.items():
        outputs = outputs_of(steps, request_id)
        assert outputs[-1].finish_reason == "length"
        assert len(outputs) == (count if request_id == "unmarked" else min(count, 2))


def test_steps_go_out_one_by_one_from_the_mark_on():
    clock = Clock()
    counts = {"cut": 30, "kept": 30}
    marks = {"cut": clock.now + 10, "kept": math.inf}
    steps = run(counts, marks, clock, tick=1.0)  # the mark falls at the 11th step
    assert tokens(steps) == tokens(run(counts, {}, Clock()))
    cut = outputs_of(steps, "cut")
    # The first output; at the mark, the held ids with the step's own; then every step.
    assert [len(output.new_token_ids) for output in cut] == [1, 10] + [1] * 19
    assert len(outputs_of(steps, "kept")) == 2


def test_a_mark_already_past_holds_nothing():
    clock = Clock()
    steps = run({"late": 5}, {"late": clock.now - 1}, clock)
    assert len(outputs_of(steps, "late")) == 5


def test_an_aborted_request_is_forgotten_and_empty_steps_are_not_sent():
    scheduler = holding(StepScheduler)({"gone": 10, "other": 3})
    for request_id in ("gone", "other"):
        scheduler.add_request(Request(request_id, Sampling({HOLD_UNTIL: math.inf})))
    sent = [scheduler.update_from_output(None, None) for _ in range(4)]
    # The first step goes out; the next is held whole (no message at all); the third finishes
    # "other"; the fourth is held whole again.
    assert [len(s[0].outputs) if s else None for s in sent] == [2, None, 1, None]
    scheduler.finish_requests("gone", "aborted")
    assert scheduler.held_steps.passed([Output("gone", [5])])[0].new_token_ids == [5]


class FinishedIdsScheduler(StepScheduler):
    """Also reports finished request ids with every step (as under data parallelism)."""

    def update_from_output(self, scheduler_output, model_runner_output):
        by_client = super().update_from_output(scheduler_output, model_runner_output)
        for outputs in by_client.values():
            outputs.finished_requests = {"elsewhere"}
        return by_client


def test_a_step_held_whole_still_sends_finished_request_ids():
    scheduler = holding(FinishedIdsScheduler)({"a": 5})
    scheduler.add_request(Request("a", Sampling({HOLD_UNTIL: math.inf})))
    scheduler.update_from_output(None, None)
    held_whole = scheduler.update_from_output(None, None)
    assert held_whole[0].outputs == [] and held_whole[0].finished_requests == {"elsewhere"}


def test_forgetting_every_request_at_shutdown():
    scheduler = holding(StepScheduler)({"a": 5})
    scheduler.add_request(Request("a", Sampling({HOLD_UNTIL: math.inf})))
    scheduler.update_from_output(None, None)
    scheduler.update_from_output(None, None)
    scheduler.finish_requests(None, "aborted")  # current releases: None is every request
    assert scheduler.held_steps.passed([Output("a", [1])])[0].new_token_ids == [1]
