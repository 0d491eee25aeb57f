"""Field types the settings and the requests that override them share, so a value is valid
in both or in neither; and the parsing of list-valued environment variables."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

# The limits of each sampling field (the API's request models use the same ones).
MaxTokens = Annotated[int, Field(gt=0)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
TopK = Annotated[int, Field(ge=-1)]
RepetitionPenalty = Annotated[float, Field(gt=0)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
SentenceCap = Annotated[int, Field(ge=0)]  # 0: no cap
# An engine priority (lower goes first); within 32 bits, as an engine keeps it.
Priority = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

# A list read from one variable: a JSON list or comma-separated (``list_from_env``).
StrList = Annotated[list[str], NoDecode]


def list_from_env(value: object) -> object:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.split(",") if part] if text else []
    return value


def json_object_from_env(value: object) -> object:
    """A JSON object read from one variable (VLLM_ENGINE_ARGS); empty is the empty object."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value) if value.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"VLLM_ENGINE_ARGS is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"VLLM_ENGINE_ARGS must be a JSON object, not {type(parsed).__name__}")
    return parsed


def also_read_as(name: str, *reference_names: str) -> AliasChoices:
    """A setting's own name, then the public reference container's names for it."""
    return AliasChoices(name, *reference_names)


def read_names(name: str, field: FieldInfo) -> list[str]:
    """The names a field is read under: its own, then the reference container's."""
    alias = field.validation_alias
    return list(alias.choices) if isinstance(alias, AliasChoices) else [name]


class BudgetRule(BaseModel):
    """A question class: questions containing any keyword get this length plan."""

    name: str
    keywords: list[str]
    max_tokens: MaxTokens
    max_sentences: SentenceCap | None = None  # None: the global cap
