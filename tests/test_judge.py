"""The judge rehearsal (python -m eval judge): the image's own environment on the tiny model,
and a breach named when a server answers the wrong count."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from dockerfile_parse import DockerfileParser

from devtools.launcher import ROOT
from eval.judge import main as judge

pytestmark = pytest.mark.judge_stack  # engine-facing: run on vLLM 0.10 too


def image_environment(tiny_model) -> list[str]:
    """--env pairs: the Dockerfile's ENV values, and what this CPU machine cannot hold."""
    env = dict(DockerfileParser(str(ROOT / "Dockerfile")).envs)
    del env["MODEL_MANIFEST"]  # written by the image's download, with the model
    del env["PORT"]  # the launcher picks a free one
    env.update(
        MODEL_DIR=str(tiny_model),  # the image's model is downloaded at build time
        HOST="127.0.0.1",  # loopback only, here
        WARMUP_DATA_PATH=str(ROOT / "data.jsonl"),  # /app/data.jsonl in the image
        # The profile reserves 0.92 of the device; here NUMA node 0 is shared with the suite.
        GPU_MEMORY_UTILIZATION="0.3",
        VLLM_CPU_KVCACHE_SPACE="2",  # 0.10's CPU worker reserves this, not a fraction
    )
    return [f"--env={name}={value}" for name, value in env.items()]


def test_the_image_environment_passes_the_judge_rehearsal(tiny_model, tmp_path, capsys):
    report = tmp_path / "judge.json"
    argv = ["--launch", f"--server-python={sys.executable}", f"--report={report}"]
    status = judge([*argv, *image_environment(tiny_model)])
    result = json.loads(report.read_text())
    assert status == 0, result["breaches"]
    assert result["status"] == {"status": "batch"} and result["health_seconds"] < 180
    questions = sum(1 for line in (ROOT / "data.jsonl").open() if line.strip())
    assert result["answers"] == questions and result["predict_seconds"] < 360
    assert result["tokens_per_s"] > 0 and result["chars_per_s"] > 0
    print(f"\njudge rehearsal: {result}")


class ShortCount(BaseHTTPRequestHandler):
    """A server that is healthy in batch mode and loses one answer of each batch."""

    def do_GET(self):
        self._send({"status": "batch"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send({"response": ["答"] * (len(body["prompt"]) - 1)})

    def _send(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_lost_answer_is_a_named_breach(tmp_path, capsys):
    server = HTTPServer(("127.0.0.1", 0), ShortCount)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        status = judge([f"--url={url}", f"--report={tmp_path / 'judge.json'}"])
    finally:
        server.shutdown()
    assert status == 1
    assert "answers for" in capsys.readouterr().err
