"""Which engine serves: vLLM through its start ladder, or transformers when vLLM is absent
or fails and USE_VLLM allows it (a fallback that is logged in a banner and kept in
``BackendInfo.fallback_reason``, which /info and every answer's X-Backend show). A
configuration error (EngineConfigError) is no failure to fall back from: it stops the server."""

from __future__ import annotations

import logging
from dataclasses import asdict

from qaserve.engine.types import Engine, EngineConfigError, EngineStart

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


def start_engine(start: EngineStart) -> Engine:
    from qaserve.engine.hf_backend import TransformersEngine

    if start.engine.use_vllm is False:
        return TransformersEngine.start(start, reason="USE_VLLM=0 asks for transformers")
    try:
        from qaserve.engine.start_ladder import start_vllm

        return start_vllm(start)
    except EngineConfigError as exc:
        logger.error("configuration error, the server stops (no fallback): %s", exc)
        raise
    except Exception as exc:
        if start.engine.use_vllm is True:
            raise
        reason = f"vLLM failed to start: {type(exc).__name__}: {exc}"
        _fallback_banner(reason)
        engine = TransformersEngine.start(start, reason=reason)
        attempts = getattr(exc, "attempts", [])
        engine.info.details["start_attempts"] = [asdict(a) for a in attempts]
        return engine
