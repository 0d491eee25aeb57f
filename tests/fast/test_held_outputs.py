"""HeldOutputs against a processor that records what it is handed: every token id reaches it
once and in order, whatever steps were held; outputs of requests not held pass unchanged. The
real-engine check (answers with held steps equal vLLM's streamed ones, on both stacks) is
tests/test_openai.py's decoded-once test."""

from __future__ import annotations

import random
from dataclasses import dataclass

from qaserve.engine.held_outputs import ID_LENGTH, HeldOutputs, new_request_id


@dataclass
class Output:  # the fields of vLLM's EngineCoreOutput that holding reads
    request_id: str
    new_token_ids: list[int]
    finish_reason: str | None = None


class Recorder:
    def __init__(self) -> None:
        self.steps: list[list[Output]] = []

    def process_outputs(self, outputs, timestamp=None, stats=None):
        self.steps.append(list(outputs))
        return ("processed", timestamp, stats)


def run(requests: dict[str, int], held: set[str], seed: int = 0):
    """Steps of one token per unfinished request (vLLM's ids carry a random suffix), each
    request finishing after its count; returns what the processor saw and the holder."""
    processor = Recorder()
    holder = HeldOutputs(processor)
    for request_id in held:
        holder.hold(request_id)
    rng = random.Random(seed)
    made = dict.fromkeys(requests, 0)
    engine_ids = {r: f"{r}-{rng.getrandbits(32):08x}" for r in requests}  # as vLLM renames them
    while any(made[r] < n for r, n in requests.items()):
        step = []
        for request_id, n in requests.items():
            if made[request_id] < n:
                made[request_id] += 1
                finish = "length" if made[request_id] == n else None
                token = rng.randrange(1000)
                step.append(Output(engine_ids[request_id], [token], finish))
        assert processor.process_outputs(step, 1.5, None) == ("processed", 1.5, None)
    return processor, holder


def tokens_seen(processor: Recorder) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for step in processor.steps:
        for output in step:
            seen.setdefault(output.request_id[:ID_LENGTH], []).extend(output.new_token_ids)
    return seen


def test_held_steps_reach_the_processor_once_in_order_with_the_last_step():
    requests = {new_request_id(): n for n in (1, 2, 3, 40)}
    unheld = new_request_id()
    requests[unheld] = 30
    held = set(requests) - {unheld}
    processor, holder = run(requests, held)
    reference, _ = run(requests, set())  # same seed, nothing held: every step as it came
    assert tokens_seen(processor) == tokens_seen(reference)
    for request_id, n in requests.items():
        outputs = [o for s in processor.steps for o in s if o.request_id.startswith(request_id)]
        if request_id == unheld:
            assert len(outputs) == n  # one per step, untouched
        else:
            # The first (prefill's facts) and the last (the rest, with the finish reason).
            assert len(outputs) == min(n, 2)
            assert outputs[-1].finish_reason == "length"
    assert holder.steps_held == sum(max(n - 2, 0) for r, n in requests.items() if r in held)


def test_a_released_request_is_held_no_more():
    processor = Recorder()
    holder = HeldOutputs(processor)
    request_id = new_request_id()
    holder.hold(request_id)
    for token in (7, 8, 9):
        processor.process_outputs([Output(request_id, [token])])
    assert holder.held_ids(request_id) == [8, 9]  # the first went by
    holder.release(request_id)  # aborted: vLLM dropped its state
    assert holder.held_ids(request_id) == []
    processor.process_outputs([Output(request_id, [10])])
    assert [[o.new_token_ids for o in step] for step in processor.steps] == [[[7]], [], [], [[10]]]


def test_request_ids_are_unique_and_of_the_length_matched():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and {len(i) for i in ids} == {ID_LENGTH}
