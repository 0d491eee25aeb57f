"""Every setting the server reads, from the environment, in one typed object.

``Settings`` is the union of the groups in ``groups.py``; the application reads it once
and gives each layer only its group (``settings.engine``, ``settings.generation``, ...).
Names follow the public reference container where it has one (MODEL_DIR, BATCH_MODE,
MAX_NEW_TOKENS, ...), and its other names are read as aliases, so existing env files keep
working; ``environment.py`` reports the names that mean nothing here. ``PROFILE`` picks a
set of defaults (``profiles.py``) under the environment. The README documents each field
with its default; ``tests/fast/test_settings.py`` keeps the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qaserve.settings.fields import BudgetRule, read_names
from qaserve.settings.groups import (
    DEFAULT_BUDGET_RULES,
    DEFAULT_SYSTEM_PROMPT,
    ApiSettings,
    EngineSettings,
    GenerationSettings,
    ModelSettings,
    ServerSettings,
    WarmupSettings,
)
from qaserve.settings.profiles import PROFILES

__all__ = [
    "DEFAULT_BUDGET_RULES",
    "DEFAULT_SYSTEM_PROMPT",
    "ApiSettings",
    "BudgetRule",
    "EngineSettings",
    "GenerationSettings",
    "ModelSettings",
    "ServerSettings",
    "Settings",
    "WarmupSettings",
    "get_settings",
]

Group = TypeVar("Group", bound=BaseModel)
GROUPS = (
    ServerSettings,
    ModelSettings,
    EngineSettings,
    GenerationSettings,
    ApiSettings,
    WarmupSettings,
)


class GroupView(Generic[Group]):
    """``settings.engine`` and the like: one layer's settings, as validated here (not
    validated again), a fresh copy at each access, with the same ``model_fields_set``."""

    def __init__(self, kind: type[Group]):
        self.kind = kind

    def __get__(self, settings: Settings, owner: type) -> Group:
        return self.kind.model_construct(
            # What was set (environment, PROFILE) stays told apart from defaults.
            _fields_set=settings.model_fields_set & self.kind.model_fields.keys(),
            **{name: getattr(settings, name) for name in self.kind.model_fields},
        )


class Settings(*GROUPS, BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", ignored_types=(GroupView,)
    )

    # Each layer's group: settings.engine is the EngineSettings part, and so on.
    server = GroupView(ServerSettings)
    model = GroupView(ModelSettings)
    engine = GroupView(EngineSettings)
    generation = GroupView(GenerationSettings)
    api = GroupView(ApiSettings)
    warmup = GroupView(WarmupSettings)

    # Named defaults (profiles.py): "competition" in the image, "general" elsewhere.
    profile: Literal["general", "competition"] = "general"

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        """The chosen profile's values, for every setting the input leaves out."""
        if not isinstance(data, dict):
            return data
        profile = PROFILES.get(str(data.get("profile", "general")).lower(), {})
        for name, choice in profile.items():
            if not any(key in data for key in read_names(name, cls.model_fields[name])):
                data[name] = choice.value
        return data

    def public_dict(self) -> dict:
        """The effective settings, safe to show in /info: keys only as a count."""
        shown = self.model_dump(mode="json", exclude={"api_key"})
        shown["api_keys_configured"] = len(self.api_key)
        return shown


@lru_cache
def get_settings() -> Settings:
    return Settings()
