"""The competition API's bodies: /predict, /info and the run-time system prompt."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictStr

from qaserve.api.sampling import SamplingRequest
from qaserve.settings.fields import SentenceCap


class PredictRequest(SamplingRequest):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    max_sentences: SentenceCap | None = None

    def questions(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    def item_count(self) -> int:
        return len(self.questions())

    def overrides(self) -> dict[str, Any]:
        chosen = self.sampling_overrides()
        if self.max_sentences is not None:
            chosen["max_sentences"] = self.max_sentences
        return chosen


class SystemPrompt(BaseModel):
    system_prompt: StrictStr


class PredictResponse(BaseModel):
    response: str | list[str]


class InfoResponse(BaseModel):
    backend: str
    engine: str
    backend_version: str
    vllm_version: str | None
    fallback_reason: str | None
    constrains_output: bool  # structured outputs and forced tool calls on /v1
    engine_details: dict[str, Any]
    model: str
    context_length: int
    system_prompt: str
    warmup: dict[str, Any]
    counters: dict[str, float]
    admission: dict[str, Any]  # limits, what is in flight, admitted and refused counts
    engine_stats: dict[str, int]
    settings: dict[str, Any]
    unread_environment: dict[str, str]  # ignored variables that look meant for the server
