import json

import httpx
import openai
import pytest

from devtools.launcher import Server, stop_on_sigterm
from devtools.tiny_model import build_tiny_model, tiny_engine_env, vllm_openai_server
from tests.constants import API_KEYS, DEFAULT_BUDGET, TEST_RULES

stop_on_sigterm()  # a CI timeout's SIGTERM still shuts every server down


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    """One vLLM server for the whole session (an engine start costs 30-60 s here)."""
    env = tiny_engine_env(
        tiny_model,
        BATCH_MODE="1",
        MAX_BATCH_SIZE="300",
        MAX_NEW_TOKENS=str(DEFAULT_BUDGET),
        BUDGET_RULES=json.dumps(TEST_RULES, ensure_ascii=False),
        API_KEY=",".join(API_KEYS),
        # LOG_ENGINE_STATS stays off, as by default: the engine holds answers' steps
        # (held_steps.py); the speculative test's server logs them (vLLM's metrics).
    )
    with Server(env, tmp_path_factory.mktemp("logs") / "server.log") as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=300) as http:
        yield http


@pytest.fixture(scope="session")
def sdk(server):
    """The official OpenAI SDK on the shared server's /v1."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEYS[1], max_retries=0)


@pytest.fixture(scope="session")
def model(sdk):
    return sdk.models.list().data[0].id


@pytest.fixture(scope="session")
def vllm_server(tiny_model, tmp_path_factory):
    """vLLM's own OpenAI server on the tiny model, with this session's interpreter (vLLM 0.10's
    under .venv-judge): what the differential and lm-evaluation-harness tests compare with."""
    argv, env = vllm_openai_server(tiny_model)
    log = tmp_path_factory.mktemp("vllm-logs") / "vllm-server.log"
    with Server(env, log, argv=argv, ready_path="/health") as running:
        yield running
