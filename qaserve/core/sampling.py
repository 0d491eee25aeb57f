"""The configured sampling: what every request starts from before its own overrides."""

from __future__ import annotations

from dataclasses import fields

from qaserve.engine import GenParams
from qaserve.settings import GenerationSettings

# Settings named as GenParams fields configure them, except MAX_SENTENCES: it is the length
# plan's default cap, which /predict applies per question.
CONFIGURED_SAMPLING = tuple(
    f.name
    for f in fields(GenParams)
    if f.name in GenerationSettings.model_fields and f.name != "max_sentences"
)


def configured_params(generation: GenerationSettings, adapter: str | None) -> GenParams:
    """GenParams from the settings alone: MAX_NEW_TOKENS as budget, no stops, no cap, the
    given adapter (None: the base model)."""
    chosen = {name: getattr(generation, name) for name in CONFIGURED_SAMPLING}
    return GenParams(max_tokens=generation.max_new_tokens, adapter=adapter, **chosen)
