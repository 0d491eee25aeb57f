"""The real FastAPI app on a fake engine, driven in-process through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from devtools.tiny_model import train_tokenizer
from qaserve.app import create_app
from qaserve.settings import Settings
from tests.fake_engine import FakeEngine


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """The tiny model's tokenizer and chat template, without weights."""
    out = tmp_path_factory.mktemp("tiny-tokenizer")
    train_tokenizer(vocab_size=4096).save_pretrained(out)
    return out


@dataclass
class Api:
    app: FastAPI
    engine: FakeEngine
    http: httpx.AsyncClient


StartApi = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def start_api(tokenizer_dir) -> StartApi:
    """``async with start_api(**settings) as api``: the app, started, on a fresh fake engine."""

    @asynccontextmanager
    async def start(on_engine_death=None, **settings) -> AsyncIterator[Api]:
        engine = FakeEngine()
        chosen = {"warmup_num_samples": 0, "model_manifest": None, **settings}
        config = Settings(model_dir=str(tokenizer_dir), **chosen)
        unasked_deaths: list[str | None] = []

        async def record_death(dead) -> None:
            unasked_deaths.append(dead.dead_reason())

        app = create_app(config, lambda _: engine, on_engine_death or record_death)
        async with app.router.lifespan_context(app):
            # Unexpected errors come back as the 500 a client sees, not as a raised exception.
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://qaserve") as http:
                yield Api(app, engine, http)
        # The watch runs in a task: a death nobody asked for would otherwise go unnoticed.
        assert unasked_deaths == [], f"the fake engine died unasked: {unasked_deaths}"

    return start
