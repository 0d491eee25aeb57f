"""The sampling fields a request may set, shared by /predict and /v1, with the limits the
settings use; ``to_gen_params`` is the single bridge from a request to the engine-facing
``GenParams``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, Field, StrictStr

from qaserve.engine import GenParams
from qaserve.settings.fields import (
    MaxTokens,
    Penalty,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
)

# An empty stop string would stop before the first token (vLLM refuses it).
StopString = Annotated[StrictStr, Field(min_length=1)]


class SamplingRequest(BaseModel):
    """Sampling fields a request may set; left out (None), the setting applies."""

    # max_new_tokens: the public reference container's name for the same budget.
    max_tokens: MaxTokens | None = Field(
        default=None, validation_alias=AliasChoices("max_tokens", "max_new_tokens")
    )
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    repetition_penalty: RepetitionPenalty | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: StopString | list[StopString] | None = None

    def sampling_overrides(self) -> dict[str, Any]:
        """The GenParams fields this request sets, by name."""
        chosen = self.model_dump(include=set(SamplingRequest.model_fields), exclude_none=True)
        if isinstance(self.stop, str):
            chosen["stop"] = (self.stop,)
        elif self.stop is not None:
            chosen["stop"] = tuple(self.stop)
        return chosen

    def to_gen_params(self, configured: GenParams, max_tokens: int) -> GenParams:
        """The configured sampling with this request's fields on top, and its budget."""
        return replace(configured, **{**self.sampling_overrides(), "max_tokens": max_tokens})
