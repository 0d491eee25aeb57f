"""API keys: with API_KEY set, /v1 (and, with PROTECT_PREDICT, /predict, /info and
/metrics) need one."""

from __future__ import annotations

import hmac

from fastapi import Request

from qaserve.api.deps import ApiConfig
from qaserve.api.errors import OpenAIError


# Async although they never await: FastAPI runs a sync dependency in its thread pool,
# a thread hop on every request for a check that takes microseconds.
async def check_api_key(request: Request, api: ApiConfig) -> None:
    """Require ``Authorization: Bearer <key>`` for one of the configured keys."""
    if not api.api_key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Compare against every key, so the time taken says nothing about which one matched.
    matches = [
        hmac.compare_digest(token.encode(), key.get_secret_value().encode()) for key in api.api_key
    ]
    if scheme.lower() != "bearer" or not any(matches):
        message = "missing or invalid API key: send 'Authorization: Bearer <key>'"
        raise OpenAIError(401, message, None, "invalid_api_key")


async def check_predict_key(request: Request, api: ApiConfig) -> None:
    if api.protect_predict:
        await check_api_key(request, api)
