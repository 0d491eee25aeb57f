"""The engine layer: what every backend takes and returns (``types``), the vLLM adapter and
its start ladder, the transformers fallback, and the engine processes' lifetime. The rest
of the server sees only the ``Engine`` protocol; ``factory.start_engine`` picks the backend."""

from __future__ import annotations

from qaserve.engine.types import (
    BackendInfo,
    Engine,
    EngineDeadError,
    EngineStart,
    GenParams,
    GenResult,
    OutputConstraint,
    RequestRefused,
    TokenLogprob,
)

__all__ = [
    "BackendInfo",
    "Engine",
    "EngineDeadError",
    "EngineStart",
    "GenParams",
    "GenResult",
    "OutputConstraint",
    "RequestRefused",
    "TokenLogprob",
]
