"""Work for a client that is gone stops: the request's task is cancelled on disconnect,
which closes its engine streams, and closing a vLLM stream aborts the request. Work the
drain abandons (qaserve/api/admission.py) stops the same way, and its request is answered
with the drain's error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response

from qaserve.api.admission import Unfinished

T = TypeVar("T")

# nginx's "client closed request": nobody reads it, but the access log says what happened.
CLIENT_CLOSED_REQUEST = 499


async def _disconnected(request: Request) -> None:
    # Only once the body has been read: from then on the server's next message is the
    # disconnect (or nothing, until the response is sent).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(
    request: Request, work: Awaitable[T], abandoned: asyncio.Future[Unfinished]
) -> T | Response:
    """``work``'s result, or, when the client leaves first, ``work`` cancelled; when the
    drain abandons it first (``abandoned`` is done), ``work`` cancelled and its error raised."""
    task = asyncio.ensure_future(work)
    gone = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, gone, abandoned}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.cancelled():
        return task.result()
    if abandoned.done():
        raise abandoned.result()
    return Response(status_code=CLIENT_CLOSED_REQUEST)
