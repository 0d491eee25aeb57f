"""The FastAPI application: settings, engine, warmup, serving objects and routes, in that
order. This is where the settings are split by layer: each part gets only its group.

The engine loads and warms up inside the lifespan, which uvicorn runs before it
binds the port: any answer on the port means the server is ready.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from qaserve.api import health, metrics
from qaserve.api.admission import Admission
from qaserve.api.body import OrjsonResponse
from qaserve.api.errors import install_error_handlers
from qaserve.api.metrics import RequestMetrics
from qaserve.api.middleware import BackendHeader
from qaserve.api.models import ModelRegistry
from qaserve.api.openai import router as openai_router
from qaserve.api.openai.serving import OpenAIServing
from qaserve.api.predict import router as predict_router
from qaserve.api.predict.serving import PredictServing, StartReport
from qaserve.core.answerer import Answerer, ParamPlanner
from qaserve.core.length import LengthPolicy
from qaserve.core.prompts import PromptBuilder, context_length
from qaserve.core.sampling import configured_params
from qaserve.core.warmup import run_warmup
from qaserve.engine import Engine, EngineStart
from qaserve.engine.factory import engine_environment_names, start_engine
from qaserve.engine.watch import exit_for_restart, watch_engine
from qaserve.model_files import with_manifest_paths
from qaserve.settings import Settings, get_settings
from qaserve.settings.environment import unread_environment
from qaserve.sigterm import on_sigterm

logger = logging.getLogger("qaserve")

ROUTERS = (health.router, predict_router.router, openai_router.router, openai_router.tokens_router)


def _configure_logging(level: str) -> None:
    """Our lines through the root logger, configured here unless something did already: a
    library that configures it later (IPEX, which vLLM 0.10 imports on CPU, calls
    logging.basicConfig) then finds it set, and no line is printed twice."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(level.upper())


async def _serve(app: FastAPI, settings: Settings, engine: Engine, unread: dict[str, str]):
    """Prompts, warmup and the serving objects of a running engine, on ``app.state``."""
    model, generation = settings.model, settings.generation
    prompts = PromptBuilder.load(
        model.model_dir,
        context_length(model.model_dir, settings.max_model_len),
        generation.enable_thinking,
        model.trust_remote_code,
    )
    models = ModelRegistry(model, prompts.context_len, created=int(time.time()))
    configured = configured_params(generation, models.default_adapter)
    planner = ParamPlanner(configured, LengthPolicy(generation), prompts.context_len)
    answerer = Answerer(engine, prompts, planner, generation.system_prompt)
    warmup = await run_warmup(answerer, settings.warmup)
    report = StartReport(model.model_dir, settings.public_dict(), warmup, unread)
    api = settings.api
    app.state.api_settings = api
    app.state.engine = engine
    app.state.admission = admission = Admission(api)
    app.state.predict_serving = PredictServing(engine, configured, api, answerer, report, admission)
    app.state.openai_serving = OpenAIServing(engine, configured, api, prompts, models)
    app.state.backend = engine.info.backend
    metrics.ENGINE.engine = engine


def create_app(
    settings: Settings | None = None,
    engine_factory: Callable[[EngineStart], Engine] = start_engine,
    on_engine_death: Callable[[Engine], Awaitable[None]] = exit_for_restart,
) -> FastAPI:
    """The server. ``engine_factory`` and ``on_engine_death`` are where tests put a fake
    engine, and a record of its death instead of the process's exit."""
    configured = with_manifest_paths(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server = configured.server
        _configure_logging(server.log_level)
        unread = unread_environment(engine_environment_names())
        for name, why in unread.items():
            logger.warning("environment variable %s is not used: %s", name, why)
        engine = engine_factory(EngineStart.of(configured))
        # The start ladder may have had to change settings to bring the engine up: from here
        # on, every part runs with the settings the engine runs with.
        settings = configured.model_copy(update=engine.info.adjusted)
        # Watched from the start: an engine that dies during warmup ends the server too.
        watch = asyncio.create_task(
            watch_engine(
                engine,
                server.engine_check_seconds,
                server.engine_dead_exit_seconds,
                on_engine_death,
            )
        )
        try:
            await _serve(app, settings, engine, unread)
            # What is alive now (model, tokenizer, the libraries' modules: hundreds of
            # thousands of objects) lives as long as the server: out of the collector's
            # sight, a full collection during a 10,000-item batch takes milliseconds, not
            # the 200 ms that stalled every request here.
            gc.freeze()
            logger.info("ready: %s backend, model %s", engine.info.backend, settings.model_dir)
            # SIGTERM: admit nothing new, let admitted work finish, then let uvicorn stop.
            drain = app.state.admission.drain
            with on_sigterm(lambda: drain(server.shutdown_timeout_seconds)):
                yield
        finally:
            gc.unfreeze()  # freed at exit as usual (nanobind reports frozen objects as leaks)
            watch.cancel()
            await engine.shutdown()

    app = FastAPI(title="qaserve", lifespan=lifespan, default_response_class=OrjsonResponse)
    app.add_middleware(BackendHeader)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # The routers' own routes (newer FastAPI releases list included routers in app.routes).
    paths = {route.path for router in ROUTERS for route in router.routes}
    app.add_middleware(RequestMetrics, routes=paths)
    return app
