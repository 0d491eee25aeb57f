"""Engine adapter: vLLM first, transformers when vLLM is absent or fails (if allowed)."""

from __future__ import annotations

import logging
from dataclasses import asdict

from qaserve.engine.types import (
    BackendInfo,
    Engine,
    EngineDeadError,
    GenParams,
    GenResult,
    TokenLogprob,
)
from qaserve.settings import Settings

__all__ = [
    "BackendInfo",
    "Engine",
    "EngineDeadError",
    "GenParams",
    "GenResult",
    "TokenLogprob",
    "engine_environment_names",
    "start_engine",
]

logger = logging.getLogger(__name__)


def _fallback_banner(reason: str) -> None:
    rule = "=" * 78
    logger.warning(
        "\n%s\nFALLBACK: serving on transformers, NOT vLLM (much slower).\n%s\n%s",
        rule,
        reason,
        rule,
    )


def engine_environment_names() -> set[str]:
    """The environment variables vLLM itself reads (none where vLLM is absent)."""
    try:
        from vllm import envs
    except ImportError:
        return set()
    return set(envs.environment_variables)


def start_engine(settings: Settings) -> Engine:
    from qaserve.engine.hf_backend import TransformersEngine

    if settings.use_vllm is False:
        return TransformersEngine.start(settings, reason="USE_VLLM=0 asks for transformers")
    try:
        from qaserve.engine.start_ladder import start_vllm

        return start_vllm(settings)
    except Exception as exc:
        if settings.use_vllm is True:
            raise
        reason = f"vLLM failed to start: {type(exc).__name__}: {exc}"
        _fallback_banner(reason)
        engine = TransformersEngine.start(settings, reason=reason)
        attempts = getattr(exc, "attempts", [])
        engine.info.details["start_attempts"] = [asdict(a) for a in attempts]
        return engine
