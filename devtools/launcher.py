"""Start a qaserve server (or another HTTP server) as a subprocess, and always clean it up.

Used by the tests, bench/ and eval.tune. The server runs in its own process group, so
stopping it also reaches vLLM's engine processes even when something failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import httpx

ROOT = Path(__file__).resolve().parents[1]  # the repository: serve.py, data.jsonl


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every ``with Server`` and fixture cleans up."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


# Ports for servers come from a block of this range that one process holds (a lock file):
# below the kernel's ephemeral range (32768-60999), so no client connection takes one, and
# apart from every other process's block, so two test sessions at once (the test command runs
# both engine stacks together) never hand one port to two servers. A port from the kernel
# (bind to 0) is free only until the server binds it, minutes later, after its engine start.
PORT_RANGE = range(20000, 32000)
PORT_BLOCK = 400


@functools.cache
def _port_block() -> tuple[range, Iterator[int], TextIO]:
    """This process's block, the port to try next, and the lock file that holds the block
    (kept open, in this cache, while the process lives: closing it would free the block)."""
    for start in range(PORT_RANGE.start, PORT_RANGE.stop, PORT_BLOCK):
        lock = open(Path(tempfile.gettempdir()) / f"qaserve-ports-{start}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        block = range(start, start + PORT_BLOCK)
        return block, itertools.cycle(block), lock
    raise RuntimeError(f"every block of ports in {PORT_RANGE} is held by a process")


def free_port() -> int:
    """A port of this process's block that nothing listens on now."""
    block, ports, _ = _port_block()
    for port in itertools.islice(ports, len(block)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or in TIME_WAIT after an earlier server
            return port
    raise RuntimeError(f"no free port in {block}")


# The server and its engine processes get a process group of their own (``kill`` reaches them
# all) but stay in the caller's session: on Linux a new session is a new scheduler autogroup,
# and on these machines (kernel 6.18) a busy engine's autogroup held the caller's processes off
# the CPU for 1-16 s at a time, up to 110 s (measured; none with autogroups off or shared).
OWN_PROCESS_GROUP = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
)

# Another way in, for a test: uvicorn's own command line (its port comes as --port).
UVICORN_CLI = ["-m", "uvicorn", "serve:app", "--host", "127.0.0.1"]


class Server:
    """``python serve.py`` by default (HOST and PORT set in its environment); ``argv`` (python
    arguments without the port, which comes as ``--port``) starts another server; ``python``
    is the interpreter (default: this one), e.g. another stack's venv."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        argv: list[str] | None = None,
        ready_path: str = "/",
        python: str = sys.executable,
    ):
        self.port = port or free_port()
        self.argv = [*argv, "--port", str(self.port)] if argv else ["serve.py"]
        self.ready_path = ready_path
        self.python = python
        self.url = f"http://127.0.0.1:{self.port}"
        # The child inherits this environment, with the server's settings on top.
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.refused_before_ready = 0
        self.log_when_ready = ""

    def spawn(self) -> None:
        """Start the process, without waiting for it to be ready."""
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.python, *self.argv],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                **OWN_PROCESS_GROUP,
            )

    def start(self, timeout: float = 600) -> Server:
        """Spawn and wait until ``ready_path`` answers; on any failure (the server exits, the
        timeout, an interrupt) kill what is left of its process group before raising."""
        self.spawn()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        self.log_when_ready = self.log()
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                httpx.get(self.url + self.ready_path, timeout=5).raise_for_status()
            except (httpx.TransportError, httpx.HTTPStatusError):
                self.refused_before_ready += 1
                time.sleep(0.5)
                continue
            return
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
