"""What routes take through FastAPI's ``Depends``: the API settings and the engine, set on
``app.state`` by the application's lifespan (qaserve/app.py) once the engine is up, before
the port opens. Each API's package has its own dependency for its serving object."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from qaserve.engine import Engine
from qaserve.settings import ApiSettings


def api_settings(request: Request) -> ApiSettings:
    return request.app.state.api_settings


def served_engine(request: Request) -> Engine:
    return request.app.state.engine


ApiConfig = Annotated[ApiSettings, Depends(api_settings)]
ServedEngine = Annotated[Engine, Depends(served_engine)]
