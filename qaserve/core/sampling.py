"""The configured sampling: what every request starts from before its own overrides."""

from __future__ import annotations

from dataclasses import fields

from qaserve.engine import GenParams
from qaserve.settings import Settings

# Settings named as GenParams fields configure them, except two that mean something else
# there: SEED seeds the engine (GenParams.seed seeds one request; None: unseeded), and
# MAX_SENTENCES is the length plan's default cap (/predict applies it per question).
_OTHER_MEANING = {"seed", "max_sentences"}
CONFIGURED_SAMPLING = tuple(
    f.name
    for f in fields(GenParams)
    if f.name in Settings.model_fields and f.name not in _OTHER_MEANING
)


def configured_params(settings: Settings) -> GenParams:
    """GenParams from the settings alone: MAX_NEW_TOKENS as budget, no stops, no cap, the
    default adapter."""
    chosen = {name: getattr(settings, name) for name in CONFIGURED_SAMPLING}
    adapter = settings.adapter_for(None)
    return GenParams(max_tokens=settings.max_new_tokens, adapter=adapter, **chosen)
