"""Routes of the competition API: health, /predict, /info and the run-time system prompt."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from qaserve.api.auth import check_predict_key
from qaserve.api.body import json_body_schema, model_response, parse_json_body
from qaserve.api.disconnect import unless_disconnected
from qaserve.api.errors import documented_errors
from qaserve.api.protocol import (
    HealthResponse,
    InfoResponse,
    PredictRequest,
    PredictResponse,
    ServerErrorResponse,
    SystemPrompt,
    ValidationErrorResponse,
)
from qaserve.api.serving_predict import PredictServing

# Health stays open whatever the key settings: the container's HEALTHCHECK, the launcher
# and orchestrators' probes carry no key (vLLM's server keeps /health open too).
health_router = APIRouter(responses=documented_errors(ServerErrorResponse, 503))
router = APIRouter(
    dependencies=[Depends(check_predict_key)],
    responses={
        **documented_errors(ServerErrorResponse, 413, 500, 503),
        **documented_errors(ValidationErrorResponse, 422),
    },
)


def _serving(request: Request) -> PredictServing:
    return request.app.state.predict_serving


@health_router.get("/", response_model=HealthResponse)
@health_router.get("/health", response_model=HealthResponse)
async def health(request: Request):
    return model_response(_serving(request).health())


@router.post(
    "/predict", response_model=PredictResponse, openapi_extra=json_body_schema(PredictRequest)
)
async def predict(request: Request):
    body = await parse_json_body(request, PredictRequest)
    return await unless_disconnected(request, _serving(request).predict(body))


@router.get("/info", response_model=InfoResponse)
async def info(request: Request):
    return model_response(_serving(request).info())


@router.get("/system_prompt", response_model=SystemPrompt)
async def get_system_prompt(request: Request):
    return model_response(SystemPrompt(system_prompt=_serving(request).system_prompt))


@router.post(
    "/system_prompt", response_model=SystemPrompt, openapi_extra=json_body_schema(SystemPrompt)
)
async def set_system_prompt(request: Request):
    body = await parse_json_body(request, SystemPrompt)
    _serving(request).system_prompt = body.system_prompt
    return model_response(body)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics():
    """Prometheus text format: qaserve_* metrics, and vLLM's with LOG_ENGINE_STATS=1."""
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
