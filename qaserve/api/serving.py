"""What both APIs' serving objects do the same way: they hold the engine and the configured
sampling every request starts from, and they refuse more engine requests in one HTTP
request than MAX_BATCH_SIZE allows (before any work; the field it names is the request's)."""

from __future__ import annotations

from qaserve.api.body import invalid_request
from qaserve.engine import Engine, GenParams
from qaserve.settings import ApiSettings


class ServingBase:
    def __init__(self, engine: Engine, configured: GenParams, api: ApiSettings):
        self.engine = engine
        self.configured = configured
        self.api = api

    def check_batch(self, count: int, field: str, what: str) -> None:
        """``count`` engine requests, described as ``what``, must fit MAX_BATCH_SIZE."""
        if count > self.api.max_batch_size:
            message = f"{what} exceed MAX_BATCH_SIZE={self.api.max_batch_size}"
            raise invalid_request("too_long", ("body", field), message, count)
