"""A dead engine ends the server: ``watch_engine`` polls the engine; once it is dead, health
and requests answer 503 for ENGINE_DEAD_EXIT_SECONDS, then the server exits with
EXIT_ENGINE_DEAD, so that Docker's restart policy or Kubernetes starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from qaserve.engine.processes import kill_child_processes
from qaserve.engine.types import Engine

logger = logging.getLogger(__name__)

EXIT_ENGINE_DEAD = 3


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
