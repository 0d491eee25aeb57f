"""What the chat clients and the evaluator read from the environment (flags override it)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    qaserve_url: str = "http://127.0.0.1:8000"
    qaserve_api_key: SecretStr | None = None
