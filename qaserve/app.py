"""The FastAPI application: engine, warmup and routes, in that order.

The engine loads and warms up inside the lifespan, which uvicorn runs before it
binds the port: any answer on the port means the server is ready.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from qaserve.engine import start_engine
from qaserve.errors import install_error_handlers
from qaserve.jsonbody import OrjsonResponse
from qaserve.model_files import with_manifest_paths
from qaserve.openai_api import router as openai_router
from qaserve.prompts import PromptBuilder, context_length
from qaserve.routes import router
from qaserve.service import Answerer, Counters
from qaserve.settings import Settings, get_settings
from qaserve.warmup import run_warmup

logger = logging.getLogger("qaserve")


def _configure_logging(level: str) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = with_manifest_paths(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _configure_logging(settings.log_level)
        engine = start_engine(settings)
        try:
            prompts = PromptBuilder.load(
                settings.model_dir,
                context_length(settings.model_dir, settings.max_model_len),
                settings.enable_thinking,
                settings.trust_remote_code,
            )
            answerer = Answerer(settings, engine, prompts, settings.system_prompt)
            app.state.warmup = await run_warmup(answerer, settings)
            answerer.counters = Counters()  # /info counts real traffic only
            app.state.answerer = answerer
            logger.info("ready: %s backend, model %s", engine.info.backend, settings.model_dir)
            yield
        finally:
            await engine.shutdown()

    app = FastAPI(title="qaserve", lifespan=lifespan, default_response_class=OrjsonResponse)
    app.state.settings = settings
    app.state.started = int(time.time())
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(openai_router)
    return app
