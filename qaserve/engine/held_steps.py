"""Steps held in vLLM's engine core: an answer that nothing reads before it is done leaves the
engine in two outputs, its first and its last, instead of one per step.

vLLM's engine core sends the server one output per running request per step; the server's
process decodes each (msgpack), and vLLM's output processor spends a few microseconds on each
(bookkeeping, building a result that a final-only request then drops). On a GPU, where a step
takes milliseconds for hundreds of requests, that is the front end's largest cost per token.
For an answer decoded at its end (no stream, stop string, logprobs or adapter: see
``detokenize.py``) each of those outputs only adds token ids, so the engine keeps them: the
request's first output goes out as it comes (it carries the prefill's facts: cached prompt
tokens, the time of the first token), the ones after it are appended to a list here, and the
last one goes out with the held token ids in front of its own.

A request is held when the server marks it (``HOLD_UNTIL`` in its sampling parameters'
``extra_args``) with the wall-clock time until which its steps may be held: a /predict
deadline cuts answers where they stand and reads what the server's output processor has, so
from that time on (``FLUSH_BEFORE_DEADLINE_SECONDS`` ahead of the deadline) the request's
held ids go out with its next output and every later step passes. Anything else passes
unchanged. Only an engine whose steps carry nothing but token ids for such a request holds
(``vllm_backend.hold_refusal``).

This module runs in the engine core's process: vLLM builds its scheduler from the qualified
name of ``held_steps_scheduler`` (engine argument ``scheduler_cls``), calling it as it would
call its own class.
"""

from __future__ import annotations

import functools
import logging
import math
import time

# Under vLLM's logger: in the engine core's process only vLLM's logging is set up.
logger = logging.getLogger(f"vllm.{__name__}")

# The key of SamplingParams.extra_args that marks a request to hold.
HOLD_UNTIL = "qaserve_hold_until"
# How long before a /predict deadline the held ids go out: the server must have them when it
# cuts the answers (one engine step and its output's trip to the server fit with margin).
FLUSH_BEFORE_DEADLINE_SECONDS = 1.0


def hold_until(deadline_in: float) -> float:
    """The HOLD_UNTIL mark for a request whose deadline is ``deadline_in`` seconds away (one
    without a deadline is marked math.inf): a whole second of wall-clock time, 1-2 s before
    the deadline, so that requests within the same second share one set of sampling
    parameters."""
    return float(math.floor(time.time() + deadline_in - FLUSH_BEFORE_DEADLINE_SECONDS))


class HeldSteps:
    """The held requests' state and the filter of a step's outputs (vLLM's EngineCoreOutput:
    request_id, new_token_ids, finish_reason; prefill_stats in current releases)."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock  # wall-clock time, as the marks are
        self._first: dict[str, float] = {}  # marked, their first output still to come
        self._held: dict[str, list[int]] = {}  # request id -> token ids held so far
        self._until: dict[str, float] = {}  # held requests with a deadline -> their mark
        self._next_flush = math.inf  # the earliest of those marks
        self._flushed: dict[str, list[int]] = {}  # due: the held ids go out with the next output

    def mark(self, request_id: str, until: float) -> None:
        self._first[request_id] = until

    def forget(self, request_ids) -> None:
        """Requests ended from outside (aborted): nothing of theirs goes out any more."""
        for request_id in request_ids:
            self._first.pop(request_id, None)
            self._held.pop(request_id, None)
            self._until.pop(request_id, None)
            self._flushed.pop(request_id, None)

    def forget_all(self) -> None:
        for state in (self._first, self._held, self._until, self._flushed):
            state.clear()
        self._next_flush = math.inf

    def passed(self, outputs: list) -> list:
        """The outputs to send, the held token ids in front of a request's last output."""
        if self._until and self._next_flush <= self._clock():
            self._flush_due()
        held, first, flushed = self._held, self._first, self._flushed
        if not held and not first and not flushed:
            return outputs
        passed = []
        for output in outputs:
            request_id = output.request_id
            ids = held.get(request_id)
            if ids is not None:
                # An output that carries more than ids (prefill facts again, after a
                # preemption) goes out with the held ids, and the request is held no more.
                if output.finish_reason is None and getattr(output, "prefill_stats", None) is None:
                    ids += output.new_token_ids
                    continue
                del held[request_id]
                self._until.pop(request_id, None)
            elif flushed:
                ids = flushed.pop(request_id, None)
            if ids:
                output.new_token_ids = ids + output.new_token_ids
            elif first and (until := first.pop(request_id, None)) is not None:
                self._start(request_id, until, output)
            passed.append(output)
        return passed

    def _start(self, request_id: str, until: float, first_output) -> None:
        """Holds the steps after a marked request's first output, unless it finished."""
        if first_output.finish_reason is None and until > self._clock():
            self._held[request_id] = []
            if until < math.inf:
                self._until[request_id] = until
                self._next_flush = min(self._next_flush, until)

    def _flush_due(self) -> None:
        now = self._clock()
        for request_id in [r for r, until in self._until.items() if until <= now]:
            del self._until[request_id]
            self._flushed[request_id] = self._held.pop(request_id)
        self._next_flush = min(self._until.values(), default=math.inf)


class HoldingSteps:
    """Mixed in front of vLLM's scheduler (V1: Scheduler or AsyncScheduler)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.held_steps = HeldSteps()

    def add_request(self, request) -> None:
        super().add_request(request)
        extra = request.sampling_params.extra_args if request.sampling_params else None
        if extra and (until := extra.get(HOLD_UNTIL)) is not None:
            self.held_steps.mark(request.request_id, until)

    def finish_requests(self, request_ids, finished_status):
        ended = super().finish_requests(request_ids, finished_status)
        if request_ids is None:  # current releases: every request (at shutdown)
            self.held_steps.forget_all()
        else:
            self.held_steps.forget([request_ids] if isinstance(request_ids, str) else request_ids)
        return ended

    def update_from_output(self, scheduler_output, model_runner_output):
        by_client = super().update_from_output(scheduler_output, model_runner_output)
        for client, outputs in list(by_client.items()):
            outputs.outputs = self.held_steps.passed(outputs.outputs)
            empty = outputs.finished_requests is None and outputs.scheduler_stats is None
            if empty and not outputs.outputs:
                del by_client[client]  # nothing left to send this client this step
        return by_client


@functools.cache
def holding(base: type) -> type:
    return type(f"Holding{base.__name__}", (HoldingSteps, base), {})


def held_steps_scheduler(*args, **kwargs):
    """vLLM's own V1 scheduler with steps held: AsyncScheduler where the engine schedules
    asynchronously (current releases turn it on by themselves on a GPU), else Scheduler.
    0.10's V0 engine (which it may choose for a model V1 lacks) calls it with its own
    arguments: it gets its own scheduler, and the server marks nothing on such an engine."""
    if "vllm_config" not in kwargs:
        from vllm.core.scheduler import Scheduler as v0_scheduler

        return v0_scheduler(*args, **kwargs)
    config = kwargs["vllm_config"].scheduler_config
    if getattr(config, "async_scheduling", False):
        from vllm.v1.core.sched.async_scheduler import AsyncScheduler as base
    else:
        from vllm.v1.core.sched.scheduler import Scheduler as base
    logger.info("steps of answers decoded at their end held by %s", holding(base).__name__)
    return holding(base)(*args, **kwargs)
