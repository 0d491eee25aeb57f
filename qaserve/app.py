"""The FastAPI application: engine, warmup, serving objects and routes, in that order.

The engine loads and warms up inside the lifespan, which uvicorn runs before it
binds the port: any answer on the port means the server is ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from qaserve.api import metrics, routes_openai, routes_predict
from qaserve.api.body import OrjsonResponse
from qaserve.api.errors import install_error_handlers
from qaserve.api.metrics import RequestMetrics
from qaserve.api.middleware import BackendHeader
from qaserve.api.serving_openai import OpenAIServing
from qaserve.api.serving_predict import PredictServing
from qaserve.core.answerer import Answerer
from qaserve.core.prompts import PromptBuilder, context_length
from qaserve.core.warmup import run_warmup
from qaserve.engine import Engine, engine_environment_names, start_engine
from qaserve.lifecycle import exit_for_restart, watch_engine
from qaserve.model_files import with_manifest_paths
from qaserve.settings import Settings, get_settings, unread_environment

logger = logging.getLogger("qaserve")


def _configure_logging(level: str) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def create_app(
    settings: Settings | None = None,
    engine_factory: Callable[[Settings], Engine] = start_engine,
    on_engine_death: Callable[[Engine], Awaitable[None]] = exit_for_restart,
) -> FastAPI:
    """The server. ``engine_factory`` and ``on_engine_death`` are where tests put a fake
    engine, and a record of its death instead of the process's exit."""
    configured = with_manifest_paths(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _configure_logging(configured.log_level)
        unread = unread_environment(engine_environment_names())
        for name, why in unread.items():
            logger.warning("environment variable %s is not used: %s", name, why)
        engine = engine_factory(configured)
        # The start ladder may have had to change settings to bring the engine up.
        settings = configured.model_copy(update=engine.info.adjusted)
        # Watched from the start: an engine that dies during warmup ends the server too.
        watch = asyncio.create_task(
            watch_engine(
                engine,
                settings.engine_check_seconds,
                settings.engine_dead_exit_seconds,
                on_engine_death,
            )
        )
        try:
            prompts = PromptBuilder.load(
                settings.model_dir,
                context_length(settings.model_dir, settings.max_model_len),
                settings.enable_thinking,
                settings.trust_remote_code,
            )
            answerer = Answerer(settings, engine, prompts)
            warmup = await run_warmup(answerer, settings)
            app.state.predict_serving = PredictServing(settings, engine, answerer, warmup, unread)
            app.state.openai_serving = OpenAIServing(
                settings, engine, prompts, created=int(time.time())
            )
            app.state.backend = engine.info.backend
            metrics.ENGINE.engine = engine
            logger.info("ready: %s backend, model %s", engine.info.backend, settings.model_dir)
            yield
        finally:
            watch.cancel()
            await engine.shutdown()

    app = FastAPI(title="qaserve", lifespan=lifespan, default_response_class=OrjsonResponse)
    app.state.settings = configured
    app.add_middleware(BackendHeader)
    install_error_handlers(app)
    routers = (routes_predict.health_router, routes_predict.router, routes_openai.router)
    for router in routers:
        app.include_router(router)
    # The routers' own routes (newer FastAPI releases list included routers in app.routes).
    paths = {route.path for router in routers for route in router.routes}
    app.add_middleware(RequestMetrics, routes=paths)
    return app
