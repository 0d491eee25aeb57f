"""The start ladder's reading of vLLM's errors: the lines as vLLM 0.10 and 0.32 write them."""

import pytest

from qaserve.engine.start_ladder import remedy, root_cause
from qaserve.engine.types import EngineStart
from qaserve.settings import Settings


def started(**values) -> EngineStart:
    return EngineStart.of(Settings(**values))


CPU_MEMORY = (
    "(EngineCore pid=11855) ERROR 11-25 16:37:11 [multiproc_executor.py:953] ValueError: "
    "Available memory on node 0 (6.19/7.59 GiB) on startup is less than desired CPU memory "
    "utilization (0.9, 6.83 GiB). On the CPU backend, the `--gpu-memory-utilization` flag ..."
)
GPU_MEMORY = (
    "ValueError: Free memory on device (20.5/64.0 GiB) on startup is less than desired GPU "
    "memory utilization (0.9, 57.6 GiB). Decrease GPU memory utilization or reduce GPU memory "
    "used by other processes."
)
KV_TOO_SMALL = (
    "ValueError: To serve at least one request with the models's max seq len (32768), (3.50 GiB "
    "KV cache is needed, which is larger than the available KV cache memory (0.44 GiB). Based on "
    "the available memory, the estimated maximum model length is 4096. Try increasing "
    "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
)
CHILD_FAILED = RuntimeError(
    "Engine core initialization failed. See root cause above. "
    "Failed core proc(s): {'EngineCore': 1}"
)


def test_the_engine_process_error_line_is_the_cause_not_the_parent_summary():
    captured = f"INFO loading\nTraceback (most recent call last):\n{CPU_MEMORY}\nINFO bye"
    assert root_cause(CHILD_FAILED, captured).startswith("ValueError: Available memory on node 0")
    assert root_cause(CHILD_FAILED, "nothing useful").startswith("RuntimeError: Engine core")
    # Raised here (not in an engine process): the exception itself, folded onto one line.
    own = ValueError("1 validation error for CacheConfig\ncache_dtype\n  no-such-dtype")
    assert root_cause(own, CPU_MEMORY) == (
        "ValueError: 1 validation error for CacheConfig cache_dtype no-such-dtype"
    )


@pytest.mark.parametrize(("line", "fraction"), [(CPU_MEMORY, 0.77), (GPU_MEMORY, 0.27)])
def test_memory_errors_size_the_reservation_from_what_is_free(line, fraction):
    rung = remedy(root_cause(CHILD_FAILED, line), started(gpu_memory_utilization=0.9))
    assert rung.change == {"gpu_memory_utilization": fraction}
    assert remedy(line, started(gpu_memory_utilization=0.2)) is None  # already below: no rung


def test_a_context_the_kv_cache_cannot_hold_shrinks_but_not_below_the_budgets():
    rung = remedy(KV_TOO_SMALL, started(max_model_len=32768))
    assert rung.change == {"max_model_len": 4096}
    greedy = [{"name": "long", "keywords": ["x"], "max_tokens": 3800}]
    assert remedy(KV_TOO_SMALL, started(max_model_len=32768, budget_rules=greedy)) is None


def test_compilation_failures_retry_eager_once():
    line = "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised: boom"
    assert remedy(line, started(enforce_eager=False)).change == {"enforce_eager": True}
    assert remedy(line, started(enforce_eager=True)) is None
    assert remedy("ValueError: unknown dtype", started()) is None


def test_a_build_that_cannot_speculate_starts_without_speculation():
    line = "(EngineCore_0 pid=5) AssertionError: spec decode is not supported."  # 0.10 on CPU
    speculating = started(enable_speculative_decoding=True, spec_method="ngram")
    assert remedy(line, speculating).change == {"enable_speculative_decoding": False}
    assert remedy(line, started(enable_speculative_decoding=False)) is None
