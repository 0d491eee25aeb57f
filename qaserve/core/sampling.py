"""The configured sampling: what every request starts from before its own overrides."""

from __future__ import annotations

from qaserve.engine import GenParams
from qaserve.settings import Settings

# Settings named as GenParams fields. SEED is left out on purpose: the setting seeds the
# engine, while GenParams.seed seeds one request (None: unseeded).
CONFIGURED_SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "sentence_endings",
)


def configured_params(settings: Settings) -> GenParams:
    """GenParams from the settings alone: MAX_NEW_TOKENS as budget, no stops, no cap."""
    chosen = {name: getattr(settings, name) for name in CONFIGURED_SAMPLING}
    return GenParams(max_tokens=settings.max_new_tokens, **chosen)
