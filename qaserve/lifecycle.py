"""Process lifetime: engine processes die with the server; a dead engine ends the server.

- ``die_with_parent``: the kernel's parent-death signal for vLLM's engine processes, so a
  server killed by SIGKILL or the OOM killer leaves no engine behind (vLLM itself reaps
  them only on a clean exit): armed at fork (``engine_processes_die_with_this_process``)
  or, in a spawned process, when it imports serve.py as ``__mp_main__``.
- ``watch_engine``: polls the engine; once it is dead, health and requests answer 503 for
  ENGINE_DEAD_EXIT_SECONDS, then the server exits with EXIT_ENGINE_DEAD, so that Docker's
  restart policy or Kubernetes starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from qaserve.engine import Engine

logger = logging.getLogger(__name__)

EXIT_ENGINE_DEAD = 3
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_armed_for: int | None = None


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process as soon as its parent ends."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def engine_processes_die_with_this_process() -> None:
    """Arm the parent-death signal in every child this process forks from now on.

    Forked children only: a spawned child (vLLM spawns on CPU, and wherever CUDA is already
    initialized) is a new interpreter; serve.py arms it when the child imports it.
    """
    global _armed_for
    if _armed_for == os.getpid():
        return
    _armed_for = server_pid = os.getpid()

    def in_child() -> None:
        # Only the server's own children: an engine process's children follow it anyway.
        if os.getppid() == server_pid:
            die_with_parent()

    os.register_at_fork(after_in_child=in_child)


def kill_child_processes() -> None:
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=5)


async def exit_for_restart(engine: Engine) -> None:
    """Stop what is left of the engine and end the process with EXIT_ENGINE_DEAD."""
    try:
        await asyncio.wait_for(engine.shutdown(), timeout=10)
    except Exception:
        logger.exception("shutting the dead engine down failed")
    finally:
        kill_child_processes()
        logging.shutdown()
        os._exit(EXIT_ENGINE_DEAD)


async def watch_engine(
    engine: Engine,
    check_seconds: float,
    exit_after_seconds: float,
    on_death: Callable[[Engine], Awaitable[None]] = exit_for_restart,
) -> None:
    while (reason := engine.dead_reason()) is None:
        await asyncio.sleep(check_seconds)
    logger.error(
        "the engine is dead (%s): answering 503 for %.0f s, then exiting with code %d "
        "so that the container or pod is restarted",
        reason,
        exit_after_seconds,
        EXIT_ENGINE_DEAD,
    )
    await asyncio.sleep(exit_after_seconds)
    await on_death(engine)
