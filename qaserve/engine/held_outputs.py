"""The engine's per-step outputs of answers that nothing reads before they finish, held here
and handed to vLLM's output processor in one piece, with the answer's last step.

vLLM's engine sends the server one output per running request per step, and its output
processor spends a few microseconds on each (bookkeeping, stats, building a result that a
final-only request then drops): on a GPU, where a step takes milliseconds for hundreds of
requests, that loop is the front end's largest cost per token. For an answer decoded at its
end (no stream, stop string, logprobs or adapter: ``detokenize.py``) each of those outputs
only adds token ids. The processor gets the answer's first output as it comes (it carries the
prefill's facts: cached prompt tokens, the time of the first token) and its last one with the
held token ids put in front of the step's own; the steps between are appended to a list here.

An output is held only if its request is one this server registered (``hold``; vLLM's id
for it, which starts with this server's, is learnt from its first output) and the step did not
finish it; anything else goes to vLLM unchanged, so a request id vLLM rewrote out of
recognition costs speed, never answers. Only an engine whose steps carry nothing else
for such a request holds (``vllm_backend.hold_refusal``): stats logging, and engine arguments
that may add to every output, keep each output going to vLLM.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

# Request ids are this long, and vLLM's own ids for them start with them: current releases
# append "-" and a random suffix, 0.10 keeps them as they are.
ID_LENGTH = 16


class HeldOutputs:
    """Wraps ``processor.process_outputs`` (vLLM's OutputProcessor, V1 engine) on the
    instance, where AsyncLLM's output handler looks it up at every step."""

    def __init__(self, processor) -> None:
        self._process: Callable = processor.process_outputs
        processor.process_outputs = self._process_outputs
        self._waiting: set[str] = set()  # held, their first output still to come
        self._held: dict[str, list[int]] = {}  # vLLM's request id -> token ids held so far
        self._engine_ids: dict[str, str] = {}  # this server's request id -> vLLM's
        self.steps_held = 0

    def hold(self, request_id: str) -> None:
        self._waiting.add(request_id)

    def release(self, request_id: str) -> None:
        """Stop holding: the request finished, or was aborted (vLLM dropped its state)."""
        self._waiting.discard(request_id)
        self._held.pop(self._engine_ids.pop(request_id, ""), None)

    def held_ids(self, request_id: str) -> list[int]:
        return list(self._held.get(self._engine_ids.get(request_id, ""), ()))

    def _process_outputs(self, outputs, *args, **kwargs):
        held, waiting = self._held, self._waiting
        if not held and not waiting:
            return self._process(outputs, *args, **kwargs)
        passed = []
        for output in outputs:
            engine_id = output.request_id
            ids = held.get(engine_id)
            if ids is not None and output.finish_reason is None:
                ids += output.new_token_ids
                continue
            if ids:  # the last output: the held token ids go in front of its own
                output.new_token_ids = ids + output.new_token_ids
                held[engine_id] = []
            elif ids is None and waiting and (request_id := engine_id[:ID_LENGTH]) in waiting:
                # Its first output (vLLM's id learnt here): the ones after it are held.
                waiting.discard(request_id)
                self._engine_ids[request_id] = engine_id
                held[engine_id] = []
            passed.append(output)
        self.steps_held += len(outputs) - len(passed)
        return self._process(passed, *args, **kwargs)


_request_numbers = itertools.count()


def new_request_id() -> str:
    """A request id unique in this process, ID_LENGTH characters long."""
    return f"qa{next(_request_numbers):0{ID_LENGTH - 2}x}"
