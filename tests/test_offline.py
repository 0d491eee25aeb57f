"""Offline at run time: the server in a fresh network namespace that has only loopback.

The model is found through python -m prep download's manifest (MODEL_DIR points nowhere), and
every Python process records its network calls (tests/netaudit). The environment is either the
container's ENV (read from the Dockerfile, so the two cannot drift) or a plain one, as a user
runs python serve.py outside the image, where the server itself must turn off the hub clients'
lookups and vLLM's usage reports. The test shows that health and /predict answer and that no
call went anywhere but loopback, on both engine stacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from dockerfile_parse import DockerfileParser

from devtools.launcher import ROOT
from devtools.tiny_model import tiny_engine_env
from qaserve.process_env import LOOPBACK_HOST, OFFLINE
from tests.netcheck import audited_commands, calls_beyond_loopback, recorded_calls

pytestmark = pytest.mark.judge_stack  # engine-facing: run on vLLM 0.10 too

# What the container sets for its own filesystem layout; the test supplies its own.
IMAGE_PATHS = {"MODEL_MANIFEST", "WARMUP_DATA_PATH", "HOST", "PORT"}
# The variables that keep the hub clients, vLLM's usage reports and its address probe quiet:
# the plain environment has none of them, so only the server's own defaults can.
QUIETING = {*OFFLINE, *LOOPBACK_HOST}


def dockerfile_env() -> dict[str, str]:
    envs = DockerfileParser(str(ROOT / "Dockerfile")).envs
    return {name: value for name, value in envs.items() if name not in IMAGE_PATHS}


def network_namespace_or_skip() -> None:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot make a network namespace here: {probe.stderr}")


@pytest.mark.parametrize("environment", ["image", "plain"])
def test_server_works_offline_and_calls_nothing_outside(tiny_model, tmp_path, environment):
    network_namespace_or_skip()
    manifest = tmp_path / "cache/manifest.json"
    fetched = subprocess.run(
        [sys.executable, "-m", "prep", "download", "--model-id", str(tiny_model)],
        env={**os.environ, "MODEL_CACHE_DIR": str(tmp_path / "cache")},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fetched.returncode == 0, fetched.stderr
    audit = tmp_path / "connections.jsonl"
    inherited = {name: value for name, value in os.environ.items() if name not in QUIETING}
    image = dockerfile_env() if environment == "image" else {}
    assert environment == "image" or not any(name in image for name in QUIETING)
    env = {
        **inherited,
        **image,
        **tiny_engine_env("/nonexistent-model-dir", MODEL_MANIFEST=str(manifest), USE_VLLM="1"),
        "PYTHONPATH": str(ROOT / "tests/netaudit"),
        "NETAUDIT_LOG": str(audit),
    }
    in_namespace = 'ip link set lo up && exec "$0" -m tests.offline_run "$1"'
    run = subprocess.run(
        ["unshare", "-n", "sh", "-c", in_namespace, sys.executable, str(tmp_path / "server.log")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # The image's competition profile says batch; the general defaults, ok.
    expected_status = "batch" if environment == "image" else "ok"
    assert result["health"] == [200, {"status": expected_status}]
    assert result["predict"][0] == 200 and isinstance(result["predict"][1]["response"], str)
    assert result["backend"] == "vllm"
    assert result["model"] == json.loads(manifest.read_text())["model"]["path"]

    records = recorded_calls(audit)
    watched = audited_commands(records)
    assert any("serve.py" in command for command in watched), watched
    assert any("multiprocessing" in command for command in watched), "no vLLM engine process"
    assert calls_beyond_loopback(records) == []
