"""Start the real server as a subprocess on a free port, and always clean it up.

Used by the tests and by bench/. The server runs in its own process group, so
stopping it also reaches vLLM's engine processes even when something failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_engine_env(model_dir: str | Path, **extra: str) -> dict[str, str]:
    """Settings that run the tiny model on this CPU machine, reproducibly."""
    env = {
        "MODEL_DIR": str(model_dir),
        "DTYPE": "float32",  # bf16 greedy output changes with batch shape
        "ENFORCE_EAGER": "1",
        "MAX_MODEL_LEN": "1024",
        "GPU_MEMORY_UTILIZATION": "0.3",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_MAX_NUM_SEQS": "256",
        "VLLM_MAX_NUM_BATCHED_TOKENS": "8192",
        "WARMUP_DATA_PATH": str(ROOT / "data.jsonl"),
        "WARMUP_NUM_SAMPLES": "4",
    }
    env.update(extra)
    return env


class Server:
    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.refused_before_ready = 0
        self.log_when_ready = ""

    def start(self, timeout: float = 300) -> Server:
        command = [sys.executable, "-m", "uvicorn", "serve:app", "--host", "127.0.0.1"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                httpx.get(self.url + "/", timeout=5)
            except httpx.TransportError:
                self.refused_before_ready += 1
                time.sleep(0.5)
                continue
            self.log_when_ready = self.log()
            return self
        self.kill()
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.tail()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM, as a container runtime sends it; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Kill whatever is left of the process group (a no-op after a clean exit)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.terminate()
        finally:
            self.kill()
