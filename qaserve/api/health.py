"""Health and metrics: ``GET /`` (and ``/health``), the judge's contract and the liveness
probe; ``GET /ready``, the readiness probe (not while draining or at the admission limits);
``GET /metrics`` for Prometheus. Health stays open whatever the key settings: the container's
HEALTHCHECK, the launcher and orchestrators' probes carry no key (vLLM's server keeps
/health open too)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from qaserve.api.admission import AdmissionState
from qaserve.api.auth import check_predict_key
from qaserve.api.body import OrjsonResponse, model_response
from qaserve.api.deps import ApiConfig, ServedEngine
from qaserve.api.errors import ServerErrorResponse, documented_errors
from qaserve.engine import EngineDeadError


class HealthResponse(BaseModel):
    status: Literal["ok", "batch"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]


router = APIRouter(responses=documented_errors(ServerErrorResponse, 503))


@router.get("/", response_model=HealthResponse)
@router.get("/health", response_model=HealthResponse)
async def health(engine: ServedEngine, api: ApiConfig):
    # Ready (the port answers only once the engine is loaded and warmed up) and alive;
    # "batch" tells the judge to send its questions in one request.
    if (reason := engine.dead_reason()) is not None:
        raise EngineDeadError(f"the engine is dead: {reason}")
    return model_response(HealthResponse(status="batch" if api.batch_mode else "ok"))


@router.get("/ready", response_model=ReadyResponse)
async def ready(engine: ServedEngine, admission: AdmissionState):
    # Alive, and taking work: 503 while draining (SIGTERM) or at the admission limits, so
    # that a balancer sends new requests elsewhere while this server finishes its own.
    if (reason := engine.dead_reason()) is not None:
        raise EngineDeadError(f"the engine is dead: {reason}")
    if (reason := admission.unready_reason()) is not None:
        return OrjsonResponse({"detail": reason}, status_code=503)
    return model_response(ReadyResponse(status="ready"))


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(check_predict_key)],
    responses=documented_errors(ServerErrorResponse, 500),
)
async def prometheus_metrics():
    """Prometheus text format: qaserve_* metrics, and vLLM's with LOG_ENGINE_STATS=1."""
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
