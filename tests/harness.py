"""Test helpers: the server launcher, and settings that run the tiny model here."""

from __future__ import annotations

from pathlib import Path

from qaserve.launcher import ROOT, Server, free_port, stop_on_sigterm

__all__ = ["ROOT", "Server", "free_port", "stop_on_sigterm", "tiny_engine_env"]


def tiny_engine_env(model_dir: str | Path, **extra: str) -> dict[str, str]:
    """Settings that run the tiny model on this CPU machine, reproducibly."""
    env = {
        "MODEL_DIR": str(model_dir),
        "DTYPE": "float32",  # bf16 greedy output changes with batch shape
        "ENFORCE_EAGER": "1",
        "MAX_MODEL_LEN": "1024",
        "GPU_MEMORY_UTILIZATION": "0.3",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_MAX_NUM_SEQS": "256",
        "VLLM_MAX_NUM_BATCHED_TOKENS": "8192",
        "WARMUP_DATA_PATH": str(ROOT / "data.jsonl"),
        "WARMUP_NUM_SAMPLES": "4",
    }
    env.update(extra)
    return env
