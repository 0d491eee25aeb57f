"""HTTP routes: health, /predict, /info and the run-time system prompt."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import AliasChoices, BaseModel, Field, StrictStr

from qaserve.auth import check_predict_key
from qaserve.jsonbody import OrjsonResponse, invalid_request, json_body_schema, parse_json_body
from qaserve.service import Answerer, Overrides
from qaserve.settings import Settings

router = APIRouter(dependencies=[Depends(check_predict_key)])


class PredictRequest(BaseModel):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    max_tokens: int | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("max_tokens", "max_new_tokens")
    )
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: list[StrictStr] | None = None
    max_sentences: int | None = Field(default=None, ge=0)

    def overrides(self) -> Overrides:
        fields = self.model_dump(exclude={"prompt", "stop"})
        return Overrides(**fields, stop=tuple(self.stop or ()))


class SystemPrompt(BaseModel):
    system_prompt: StrictStr


def _answerer(request: Request) -> Answerer:
    return request.app.state.answerer


def _settings(request: Request) -> Settings:
    return request.app.state.settings


@router.get("/")
async def health(request: Request):
    return {"status": "batch" if _settings(request).batch_mode else "ok"}


@router.post("/predict", openapi_extra=json_body_schema(PredictRequest))
async def predict(request: Request):
    body = await parse_json_body(request, PredictRequest)
    single = isinstance(body.prompt, str)
    questions = [body.prompt] if single else body.prompt
    limit = _settings(request).max_batch_size
    if len(questions) > limit:
        message = f"batch of {len(questions)} prompts exceeds MAX_BATCH_SIZE={limit}"
        raise invalid_request("too_long", ("body", "prompt"), message, len(questions))
    answers = await _answerer(request).answer(questions, body.overrides())
    return OrjsonResponse(
        {"response": answers.texts[0] if single else answers.texts},
        headers={
            "X-Process-Seconds": f"{answers.seconds:.6f}",
            "X-Output-Tokens": str(answers.output_tokens),
        },
    )


@router.get("/info")
async def info(request: Request):
    answerer = _answerer(request)
    engine = answerer.engine.info
    settings = _settings(request)
    return {
        "backend": engine.backend,
        "engine": engine.engine,
        "backend_version": engine.version,
        "vllm_version": engine.version if engine.backend == "vllm" else None,
        "fallback_reason": engine.fallback_reason,
        "engine_details": engine.details,
        "model": settings.model_dir,
        "context_length": answerer.prompts.context_len,
        "system_prompt": answerer.system_prompt,
        "warmup": asdict(request.app.state.warmup),
        "counters": asdict(answerer.counters),
        "engine_stats": answerer.engine.stats,
        "settings": settings.public_dict(),
    }


@router.get("/system_prompt")
async def get_system_prompt(request: Request):
    return {"system_prompt": _answerer(request).system_prompt}


@router.post("/system_prompt", openapi_extra=json_body_schema(SystemPrompt))
async def set_system_prompt(request: Request):
    body = await parse_json_body(request, SystemPrompt)
    _answerer(request).system_prompt = body.system_prompt
    return {"system_prompt": body.system_prompt}
