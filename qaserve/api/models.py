"""The names this server answers to: the base model's and each LoRA adapter's served beside
it, which adapter a request's model picks, and the /v1/models listing."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from prep.adapters import pick_adapter
from qaserve.settings import ModelSettings


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "qaserve"
    max_model_len: int
    parent: str | None = None  # a LoRA adapter's base model, as vLLM lists adapters


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ModelRegistry:
    """Built once at start: an unknown DEFAULT_ADAPTER fails the start, not a request."""

    def __init__(self, model: ModelSettings, context_len: int, created: int):
        self.base_name = model.served_model_name or Path(model.model_dir.rstrip("/")).name
        self.adapters = dict(model.lora_adapters)
        self.context_len = context_len
        self.created = created
        self.default_adapter = (
            None if model.default_adapter is None else self.adapter_for(model.default_adapter)
        )

    def adapter_for(self, requested: str | None) -> str | None:
        """The adapter a model name picks (None: the base model); no name: the default.
        LookupError for a name that is neither the base's nor an adapter's."""
        if requested is None:
            return self.default_adapter
        return pick_adapter(requested, self.base_name, self.adapters)

    def model_list(self) -> ModelList:
        """The base model, then each LoRA adapter served beside it."""
        cards = [
            ModelCard(
                id=name,
                created=self.created,
                max_model_len=self.context_len,
                parent=None if name == self.base_name else self.base_name,
            )
            for name in [self.base_name, *self.adapters]
        ]
        return ModelList(data=cards)
