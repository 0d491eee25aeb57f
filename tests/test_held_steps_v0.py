"""vLLM 0.10 may run a V0 engine (for a model or platform its V1 engine lacks; not on the CPU,
which refuses V0): it builds the configured scheduler class with its own V0 arguments, so the
held-steps scheduler (held_steps.py) must hand it V0's own scheduler, holding nothing."""

import pytest

from qaserve.engine.held_steps import held_steps_scheduler

pytestmark = pytest.mark.judge_stack


def test_a_v0_engine_gets_its_own_scheduler():
    v0 = pytest.importorskip("vllm.core.scheduler", reason="current releases have no V0 engine")
    from vllm.config import CacheConfig, SchedulerConfig

    scheduling = SchedulerConfig(max_num_batched_tokens=2048, max_num_seqs=8, max_model_len=1024)
    cache = CacheConfig(block_size=16, gpu_memory_utilization=0.5, swap_space=0, cache_dtype="auto")
    cache.num_gpu_blocks, cache.num_cpu_blocks = 64, 0
    # As 0.10's LLMEngine calls it: configs, LoRA config, pipeline stages, output callback.
    scheduler = held_steps_scheduler(scheduling, cache, None, 1, None)
    assert type(scheduler) is v0.Scheduler
