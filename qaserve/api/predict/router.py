"""Routes of the competition API: /predict, /info and the run-time system prompt
(health and /metrics are in qaserve/api/health.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from qaserve.api.admission import Ticket, admitted
from qaserve.api.auth import check_predict_key
from qaserve.api.body import json_body, json_body_schema, model_response
from qaserve.api.disconnect import unless_disconnected
from qaserve.api.errors import ServerErrorResponse, ValidationErrorResponse, documented_errors
from qaserve.api.predict.protocol import (
    InfoResponse,
    PredictRequest,
    PredictResponse,
    SystemPrompt,
)
from qaserve.api.predict.serving import PredictServing

router = APIRouter(
    dependencies=[Depends(check_predict_key)],
    responses={
        **documented_errors(ServerErrorResponse, 413, 500, 503),
        **documented_errors(ValidationErrorResponse, 422),
    },
)


def _serving(request: Request) -> PredictServing:
    return request.app.state.predict_serving


Serving = Annotated[PredictServing, Depends(_serving)]


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=documented_errors(ServerErrorResponse, 429),
    openapi_extra=json_body_schema(PredictRequest),
)
async def predict(
    request: Request,
    serving: Serving,
    body: Annotated[PredictRequest, Depends(json_body(PredictRequest))],
    ticket: Annotated[Ticket, Depends(admitted(PredictRequest))],
):
    return await unless_disconnected(request, serving.predict(body), ticket.abandoned)


@router.get("/info", response_model=InfoResponse)
async def info(serving: Serving):
    return model_response(serving.info())


@router.get("/system_prompt", response_model=SystemPrompt)
async def get_system_prompt(serving: Serving):
    return model_response(SystemPrompt(system_prompt=serving.system_prompt))


@router.post(
    "/system_prompt", response_model=SystemPrompt, openapi_extra=json_body_schema(SystemPrompt)
)
async def set_system_prompt(
    serving: Serving, body: Annotated[SystemPrompt, Depends(json_body(SystemPrompt))]
):
    serving.system_prompt = body.system_prompt
    return model_response(body)
