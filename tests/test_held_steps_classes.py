"""The schedulers the held-steps factory (held_steps.py) gives vLLM, on the installed vLLM:
0.10's V0 engine (for a model or platform its V1 engine lacks; not on the CPU, which refuses V0)
builds the configured class with its own V0 arguments and must get V0's own scheduler; where
the engine schedules asynchronously (a GPU; vLLM turns it off on the CPU, so no engine here runs
it) the holding scheduler is vLLM's AsyncScheduler with the same three methods in front as on
the Scheduler that the real-engine tests run."""

import pytest

from qaserve.engine.held_steps import HoldingSteps, held_steps_scheduler, holding

pytestmark = pytest.mark.judge_stack

HELD_METHODS = ("add_request", "finish_requests", "update_from_output")


def test_a_v0_engine_gets_its_own_scheduler():
    v0 = pytest.importorskip("vllm.core.scheduler", reason="current releases have no V0 engine")
    from vllm.config import CacheConfig, SchedulerConfig

    scheduling = SchedulerConfig(max_num_batched_tokens=2048, max_num_seqs=8, max_model_len=1024)
    cache = CacheConfig(block_size=16, gpu_memory_utilization=0.5, swap_space=0, cache_dtype="auto")
    cache.num_gpu_blocks, cache.num_cpu_blocks = 64, 0
    # As 0.10's LLMEngine calls it: configs, LoRA config, pipeline stages, output callback.
    scheduler = held_steps_scheduler(scheduling, cache, None, 1, None)
    assert type(scheduler) is v0.Scheduler


def test_the_async_scheduler_holds_through_the_same_methods():
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    for base in (Scheduler, AsyncScheduler):
        held = holding(base)
        assert issubclass(held, base) and held.__name__ == f"Holding{base.__name__}"
        for name in HELD_METHODS:
            assert getattr(held, name) is getattr(HoldingSteps, name)
    # The outputs the AsyncScheduler's steps make come from the Scheduler's own methods.
    assert not set(HELD_METHODS) & set(vars(AsyncScheduler))
