"""API keys: with API_KEY set, /v1 (and, with PROTECT_PREDICT, / and /predict) need one."""

from __future__ import annotations

import hmac

from fastapi import Request

from qaserve.api.errors import OpenAIError


# Async although they never await: FastAPI runs a sync dependency in its thread pool,
# a thread hop on every request for a check that takes microseconds.
async def check_api_key(request: Request) -> None:
    """Require ``Authorization: Bearer <key>`` for one of the configured keys."""
    keys = request.app.state.settings.api_key
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Compare against every key, so the time taken says nothing about which one matched.
    matches = [hmac.compare_digest(token.encode(), k.get_secret_value().encode()) for k in keys]
    if scheme.lower() != "bearer" or not any(matches):
        message = "missing or invalid API key: send 'Authorization: Bearer <key>'"
        raise OpenAIError(401, message, None, "invalid_api_key")


async def check_predict_key(request: Request) -> None:
    if request.app.state.settings.protect_predict:
        await check_api_key(request)
