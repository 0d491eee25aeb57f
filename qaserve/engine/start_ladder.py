"""Start vLLM as configured; when a start fails for a reason a smaller setting fixes, retry.

The rungs, each taken when vLLM's own error says so (the error text is read back from
the engine process's output through OutputTap):

- memory: "Available memory on node N (free/total GiB)" (CPU) or "Free memory on device
  (free/total GiB)" (GPU) -> GPU_MEMORY_UTILIZATION = free/total minus a margin;
- context: "the estimated maximum model length is N" -> MAX_MODEL_LEN = N, but never
  below the longest answer budget plus a typical prompt;
- compilation or graph capture failing -> ENFORCE_EAGER;
- speculation refused by the build ("spec decode is not supported": vLLM 0.10's CPU model
  runner) -> without speculative decoding.

Before the first attempt, a MAX_MODEL_LEN above the model's declared context is lowered to it.

Every attempt, its error line and what it changed are logged and kept for /info.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, replace

from qaserve.engine.output_tap import OutputTap
from qaserve.engine.types import EngineConfigError, EngineStart
from qaserve.model_files import declared_context

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
MEMORY_MARGIN = 0.05  # of the device (or NUMA node), left to what else runs there
MAX_CAUSE_CHARS = 600  # of an error message folded onto one line
PROMPT_ALLOWANCE = 512  # tokens of a typical prompt: system prompt plus question

_MEMORY = re.compile(
    r"(?:Available memory on node \d+|Free memory on device[^(]*) \(([\d.]+)/([\d.]+) GiB\)"
)
_FITTING_LENGTH = re.compile(r"estimated maximum model length is (\d+)")
_CHILD_FAILED = "initialization failed"  # vLLM 0.10 and later, when the engine core failed
_COMPILATION = re.compile(r"dynamo|inductor|cuda ?graph|compil", re.IGNORECASE)
_NO_SPECULATION = re.compile(r"spec(?:ulative)? decod\w* (?:is )?not supported", re.IGNORECASE)
# An exception line, also behind the "(EngineCore pid=N)" prefix vLLM puts on its children.
_ERROR_LINE = re.compile(r"(?:^|\s)((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Failed): .+)$")


@dataclass
class StartAttempt:
    changed: dict  # the settings this attempt changed (empty for the first)
    seconds: float
    error: str | None = None  # the root-cause line of a failed attempt


@dataclass
class Rung:
    change: dict
    why: str


class EngineStartError(RuntimeError):
    """vLLM did not start; ``attempts`` says how each try ended."""

    def __init__(self, message: str, attempts: list[StartAttempt]):
        super().__init__(message)
        self.attempts = attempts


def error_lines(text: str) -> list[str]:
    found = (_ERROR_LINE.search(line) for line in text.splitlines())
    return [match.group(1).strip() for match in found if match]


def root_cause(exc: BaseException, captured: str) -> str:
    """The line that says why a start failed. An engine process that failed leaves its
    parent only "Engine core initialization failed": then it is the process's own error
    line from ``captured``; otherwise the exception itself."""
    own = " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_CAUSE_CHARS]
    if _CHILD_FAILED not in own:
        return own
    lines = [line for line in error_lines(captured) if _CHILD_FAILED not in line]
    for line in lines:
        if _MEMORY.search(line) or _FITTING_LENGTH.search(line):
            return line
    return lines[-1] if lines else own


def remedy(cause: str, start: EngineStart) -> Rung | None:
    """The smaller setting that the failure says would let vLLM start; None if none."""
    settings = start.engine
    if memory := _MEMORY.search(cause):
        free, total = float(memory[1]), float(memory[2])
        fraction = round(free / total - MEMORY_MARGIN, 2)
        if 0 < fraction < settings.gpu_memory_utilization:
            why = f"{free}/{total} GiB free: the reservation must fit in it"
            return Rung({"gpu_memory_utilization": fraction}, why)
    if fitting := _FITTING_LENGTH.search(cause):
        fits, needed = int(fitting[1]), start.longest_answer + PROMPT_ALLOWANCE
        current = settings.max_model_len
        if needed <= fits and (current is None or fits < current):
            why = f"the KV cache holds {fits} tokens (at least {needed} are needed)"
            return Rung({"max_model_len": fits}, why)
    if _COMPILATION.search(cause) and not settings.enforce_eager:
        return Rung({"enforce_eager": True}, "compilation or graph capture failed")
    if _NO_SPECULATION.search(cause) and settings.enable_speculative_decoding:
        return Rung({"enable_speculative_decoding": False}, "this vLLM build cannot speculate")
    return None


def within_declared_context(start: EngineStart) -> dict:
    """MAX_MODEL_LEN lowered to the model's declared context where it asks for more (vLLM
    would refuse to start: "User-specified max_model_len ... is greater than the derived")."""
    wanted = start.engine.max_model_len
    declared = declared_context(start.model.model_dir)
    if wanted is None or declared is None or wanted <= declared:
        return {}
    logger.warning(
        "MAX_MODEL_LEN=%d is more than the model declares (max_position_embeddings=%d): "
        "vLLM runs with %d",
        wanted,
        declared,
        declared,
    )
    return {"max_model_len": declared}


def start_vllm(start: EngineStart):
    """The VllmEngine, started by as many rungs of the ladder as it takes."""
    from qaserve.engine.vllm_backend import VllmEngine

    attempts: list[StartAttempt] = []
    changed: dict = within_declared_context(start)
    with OutputTap() as tap:
        while True:
            current = replace(start, engine=start.engine.model_copy(update=changed))
            mark, started = tap.mark(), time.perf_counter()
            try:
                engine = VllmEngine.start(current)
                break
            except EngineConfigError:
                raise  # a setting to correct: no rung changes it
            except Exception as exc:
                cause = root_cause(exc, tap.since(mark))
                seconds = time.perf_counter() - started
                attempts.append(StartAttempt(dict(changed), seconds, cause))
                logger.warning("vLLM start attempt %d failed: %s", len(attempts), cause)
                rung = remedy(cause, current) if len(attempts) < MAX_ATTEMPTS else None
                if rung is None:
                    raise EngineStartError(cause, attempts) from exc
                logger.warning("retrying vLLM with %s (%s)", rung.change, rung.why)
                changed.update(rung.change)
    attempts.append(StartAttempt(dict(changed), time.perf_counter() - started))
    engine.info.adjusted.update(changed)
    engine.info.details["start_attempts"] = [asdict(a) for a in attempts]
    if changed:
        logger.warning("vLLM started on attempt %d with %s", len(attempts), changed)
    return engine
