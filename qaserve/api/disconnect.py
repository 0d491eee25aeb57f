"""Work for a client that is gone stops: the request's task is cancelled on disconnect,
which closes its engine streams, and closing a vLLM stream aborts the request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response

T = TypeVar("T")

# nginx's "client closed request": nobody reads it, but the access log says what happened.
CLIENT_CLOSED_REQUEST = 499


async def _disconnected(request: Request) -> None:
    # Only once the body has been read: from then on the server's next message is the
    # disconnect (or nothing, until the response is sent).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    """``work``'s result, or, when the client leaves first, ``work`` cancelled."""
    task = asyncio.ensure_future(work)
    gone = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return task.result()
