"""Engine adapter: vLLM first, transformers when vLLM is absent or fails (if allowed)."""

from __future__ import annotations

import logging

from qaserve.engine.types import BackendInfo, Engine, GenParams, GenResult
from qaserve.settings import Settings

__all__ = ["BackendInfo", "Engine", "GenParams", "GenResult", "start_engine"]

logger = logging.getLogger(__name__)


def start_engine(settings: Settings) -> Engine:
    from qaserve.engine.hf_backend import TransformersEngine

    if settings.use_vllm is False:
        return TransformersEngine.start(settings, reason="USE_VLLM=0 asks for transformers")
    try:
        from qaserve.engine.vllm_backend import VllmEngine

        return VllmEngine.start(settings)
    except Exception as exc:
        if settings.use_vllm is True:
            raise
        reason = f"vLLM failed to start: {type(exc).__name__}: {exc}"
        logger.warning("%s; falling back to transformers", reason)
        return TransformersEngine.start(settings, reason=reason)
