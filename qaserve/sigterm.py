"""SIGTERM runs a coroutine before the server hears of it: the lifespan drains admitted work
this way (qaserve/api/admission.py) before uvicorn starts its own shutdown.

Inside ``on_sigterm``, the first SIGTERM schedules ``before`` on the event loop; once it has
returned (or failed), the signal goes on to the handler that was there: uvicorn's (``python
serve.py`` and ``uvicorn serve:app`` alike), which stops the server and re-raises the signal
when it is done. A second SIGTERM goes on at once. Where no Python handler was there, the
signal is raised again under the one that was (the default: the process ends).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


@contextmanager
def on_sigterm(before: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """Within: SIGTERM runs ``before`` first. Only from the main thread (where signals are
    handled), inside a running event loop; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    received_before: list[int] = []
    work: list[asyncio.Task] = []  # held here: the loop keeps only weak references to tasks

    def hand_on(signum: int) -> None:
        if callable(previous):
            previous(signum, None)
        else:
            signal.signal(signum, previous or signal.SIG_DFL)
            signal.raise_signal(signum)

    async def run_then_hand_on(signum: int) -> None:
        try:
            await before()
        except Exception:
            logger.exception("SIGTERM: the work before shutting down failed")
        finally:
            hand_on(signum)

    def start(signum: int) -> None:
        work.append(loop.create_task(run_then_hand_on(signum)))

    def received(signum: int, frame) -> None:
        if received_before:  # a second SIGTERM: no more waiting
            hand_on(signum)
            return
        received_before.append(signum)
        # The handler runs between two bytecodes of the loop's thread: the work starts from
        # the loop itself.
        loop.call_soon_threadsafe(start, signum)

    signal.signal(signal.SIGTERM, received)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is received:
            signal.signal(signal.SIGTERM, previous)
