"""The parallel layout vLLM runs with: tensor, pipeline and data parallel sizes, the
executor, and on a CPU host one group of cores per worker."""

from __future__ import annotations

import os

from qaserve.settings import EngineSettings


def visible_gpus() -> int:
    """CUDA devices this process sees (MetaX's torch answers as CUDA too); 0 without."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def tensor_parallel_size(settings: EngineSettings) -> int:
    """TENSOR_PARALLEL_SIZE, with ``auto`` as every visible GPU (1 on a CPU host)."""
    if settings.tensor_parallel_size == "auto":
        return max(1, visible_gpus())
    return settings.tensor_parallel_size


def cpu_threads_binding(workers: int, cores: list[int]) -> str:
    """A VLLM_CPU_OMP_THREADS_BIND value: the cores split into one group per worker
    ("0|1" for two workers on two cores). vLLM's CPU build refuses TP > 1 without one."""
    per_worker = len(cores) // workers
    if per_worker == 0:
        raise ValueError(f"{workers} CPU workers need a core each; this process has {len(cores)}")
    groups = [cores[i * per_worker : (i + 1) * per_worker] for i in range(workers)]
    return "|".join(",".join(map(str, group)) for group in groups)


def prepare_layout(settings: EngineSettings, on_cpu: bool) -> tuple[dict, dict[str, str]]:
    """The layout for /info, and the variables vLLM's processes must find in their
    environment: on a CPU host with several workers, each bound to its own cores unless
    VLLM_CPU_OMP_THREADS_BIND says how already."""
    layout = {
        "tensor_parallel_size": tensor_parallel_size(settings),
        "pipeline_parallel_size": settings.pipeline_parallel_size,
        "data_parallel_size": settings.data_parallel_size,
        "distributed_executor_backend": settings.distributed_executor_backend or "default",
    }
    workers = layout["tensor_parallel_size"] * layout["pipeline_parallel_size"]
    binding = settings.vllm_cpu_omp_threads_bind
    environment = {}
    if on_cpu and workers > 1 and binding is None:
        binding = cpu_threads_binding(workers, sorted(os.sched_getaffinity(0)))
        # vLLM's CPU workers read it from the environment, in the processes it starts.
        environment["VLLM_CPU_OMP_THREADS_BIND"] = binding
    if on_cpu:
        layout["cpu_threads_bind"] = binding or "auto"
    return layout, environment
