"""HTTP routes: health, /predict, /info and the run-time system prompt."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, Field, StrictStr, ValidationError

from qaserve.service import Answerer, Overrides
from qaserve.settings import Settings

router = APIRouter()


class OrjsonResponse(JSONResponse):
    def render(self, content) -> bytes:
        return orjson.dumps(content)


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


def _invalid(kind: str, loc: tuple, msg: str, value) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


async def parse_json_body(request: Request, model: type[BaseModel]):
    """Parse the body as JSON whatever its Content-Type (plain curl sends a form type)."""
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid("json_invalid", ("body",), f"body is not valid JSON: {exc}", None) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


def _json_body(model: type[BaseModel]) -> dict:
    """OpenAPI description of a body that is parsed by hand."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _answerer(request: Request) -> Answerer:
    return request.app.state.answerer


def _settings(request: Request) -> Settings:
    return request.app.state.settings


@router.get("/")
async def health(request: Request):
    return {"status": "batch" if _settings(request).batch_mode else "ok"}


@router.post("/predict", openapi_extra=_json_body(PredictRequest))
async def predict(request: Request):
    body = await parse_json_body(request, PredictRequest)
    single = isinstance(body.prompt, str)
    questions = [body.prompt] if single else body.prompt
    limit = _settings(request).max_batch_size
    if len(questions) > limit:
        message = f"batch of {len(questions)} prompts exceeds MAX_BATCH_SIZE={limit}"
        raise _invalid("too_long", ("body", "prompt"), message, len(questions))
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
        "settings": settings.public_dict(),
    }


@router.get("/system_prompt")
async def get_system_prompt(request: Request):
    return {"system_prompt": _answerer(request).system_prompt}


@router.post("/system_prompt", openapi_extra=_json_body(SystemPrompt))
async def set_system_prompt(request: Request):
    body = await parse_json_body(request, SystemPrompt)
    _answerer(request).system_prompt = body.system_prompt
    return {"system_prompt": body.system_prompt}
