"""The image's HEALTHCHECK command against a real uvicorn server on the fake engine."""

import os
import subprocess
import sys
import threading
import time

import httpx
import uvicorn

from devtools.launcher import ROOT, free_port
from qaserve.app import create_app
from qaserve.settings import Settings
from tests.constants import API_KEYS
from tests.fake_engine import FakeEngine


def healthcheck(port: int) -> subprocess.CompletedProcess:
    # The container's environment: the key is set and /predict is protected.
    env = {**os.environ, "PORT": str(port), "PROTECT_PREDICT": "1", "API_KEY": API_KEYS[0]}
    command = [sys.executable, "-m", "qaserve.healthcheck"]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_healthcheck_passes_with_protect_predict_and_an_api_key(tokenizer_dir):
    settings = Settings(
        model_dir=str(tokenizer_dir),
        protect_predict=True,
        api_key=list(API_KEYS),
        warmup_num_samples=0,
        model_manifest=None,
    )
    app = create_app(settings, engine_factory=lambda _: FakeEngine())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        done = healthcheck(port)
        assert done.returncode == 0, done.stderr
        guarded = httpx.post(f"http://127.0.0.1:{port}/predict", json={"prompt": "q"})
        assert guarded.status_code == 401  # the key still guards the answers
    finally:
        server.should_exit = True
        thread.join(30)


def test_healthcheck_fails_when_nothing_answers():
    done = healthcheck(free_port())
    assert done.returncode == 1 and "Connection refused" in done.stderr
