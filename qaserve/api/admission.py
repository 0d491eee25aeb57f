"""Admission: how much generating work the server takes at once, and the drain on SIGTERM.

Every request of a generating route (/predict, /v1/chat/completions, /v1/completions,
/v1/responses) holds a ``Ticket`` from the moment its body is parsed (before any tokenizing)
until its response is sent, a stream's included. Its items are the engine requests it makes: a
/predict batch's prompts, a /v1 request's prompts times ``n``. Past MAX_REQUESTS_IN_FLIGHT or
MAX_ITEMS_IN_FLIGHT a request is refused at once (``Overloaded``: 429 with Retry-After), except
a lone one: with nothing in flight any request is admitted, so the judge's one batch always
runs. Admitted work is what the server holds in memory, so a flood costs refusals, not memory.

The drain is here too, with the state it needs: on SIGTERM (``drain``) nothing new is admitted
(``Draining``: 503 with ``Connection: close``), what was admitted gets SHUTDOWN_TIMEOUT_SECONDS
to finish, and what is still running then is abandoned: each ticket's ``abandoned`` future
gets an ``Unfinished`` error, which its request answers with instead of its answer.
"""

# No ``from __future__ import annotations``: FastAPI reads the signature of the dependency
# ``admitted`` builds, whose body type is made from a local (the request model).
import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Protocol

from fastapi import Depends, Request
from pydantic import BaseModel

from qaserve.api import metrics
from qaserve.api.body import json_body
from qaserve.settings import ApiSettings

logger = logging.getLogger(__name__)

# After the drain's deadline: how long abandoned requests get to send their error.
ABANDON_GRACE_SECONDS = 5.0


class AdmissionError(Exception):
    """A request turned away, or stopped by the drain: its status, its headers and the error
    code both APIs show."""

    status: int
    code: str

    def __init__(self, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.headers = headers


class Overloaded(AdmissionError):
    status, code = 429, "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, {"Retry-After": str(retry_after)})


# The server is going away: the client's next request goes on a new connection (to another
# replica behind the same address).
_CLOSE = {"Connection": "close"}


class Draining(AdmissionError):
    status, code = 503, "server_shutting_down"

    def __init__(self):
        super().__init__(
            "the server is shutting down and admits no new work: send it to another replica",
            _CLOSE,
        )


class Unfinished(AdmissionError):
    """An admitted request the drain could not wait for: answered with this, never cut."""

    status, code = 503, "server_shutting_down"

    def __init__(self, message: str):
        super().__init__(message, _CLOSE)


class Ticket:
    """One admitted request: its items, and the future the drain abandons it through."""

    def __init__(self, items: int):
        self.items = items
        self.abandoned: asyncio.Future[Unfinished] = asyncio.get_running_loop().create_future()


class Admission:
    def __init__(self, api: ApiSettings):
        self.max_requests = api.max_requests_in_flight
        self.max_items = api.max_items_in_flight
        self.retry_after = api.retry_after_seconds
        self.draining = False
        self.items_in_flight = 0
        # Since the start: refused by the limit they would pass, or while draining.
        self.counts = dict.fromkeys(
            ("admitted", "refused_requests", "refused_items", "refused_draining", "abandoned"), 0
        )
        self._tickets: set[Ticket] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def _over(self, items: int) -> tuple[str, str] | None:
        """Which limit ``items`` more would pass, as (label, message); None: none."""
        requests = len(self._tickets)
        if not requests:
            return None  # a lone request always runs, whatever its size
        if self.max_requests and requests + 1 > self.max_requests:
            return "requests", (
                f"{requests} requests in flight: MAX_REQUESTS_IN_FLIGHT={self.max_requests}"
            )
        if self.max_items and self.items_in_flight + items > self.max_items:
            return "items", (
                f"{self.items_in_flight} items in flight and {items} more would pass "
                f"MAX_ITEMS_IN_FLIGHT={self.max_items}"
            )
        return None

    def admit(self, route: str, items: int) -> Ticket:
        if self.draining:
            self._refused(route, "draining")
            raise Draining()
        over = self._over(items)
        if over is not None:
            reason, why = over
            self._refused(route, reason)
            raise Overloaded(
                f"the server is at its admission limit ({why}): retry after {self.retry_after} s",
                self.retry_after,
            )
        ticket = Ticket(items)
        self._tickets.add(ticket)
        self.items_in_flight += items
        self._idle.clear()
        self.counts["admitted"] += 1
        metrics.ADMITTED.labels(route).inc()
        metrics.ADMITTED_ITEMS.inc(items)
        return ticket

    def release(self, ticket: Ticket) -> None:
        self._tickets.discard(ticket)
        self.items_in_flight -= ticket.items
        metrics.ADMITTED_ITEMS.dec(ticket.items)
        if not self._tickets:
            self._idle.set()

    def _refused(self, route: str, reason: str) -> None:
        self.counts[f"refused_{reason}"] += 1
        metrics.REFUSED.labels(route, reason).inc()

    def unready_reason(self) -> str | None:
        """Why the server should get no traffic now; None: ready."""
        if self.draining:
            return "draining: the server is shutting down"
        over = self._over(1)
        return None if over is None else f"at its admission limit: {over[1]}"

    def report(self) -> dict:
        """For /info: the limits, what is in flight, and the counts since the start."""
        return {
            "max_requests_in_flight": self.max_requests,
            "max_items_in_flight": self.max_items,
            "requests_in_flight": len(self._tickets),
            "items_in_flight": self.items_in_flight,
            "draining": self.draining,
            **self.counts,
        }

    async def _idle_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except asyncio.TimeoutError:  # not TimeoutError: on Python 3.10 they differ
            return False
        return True

    async def drain(self, timeout: float) -> None:
        """Admit nothing more; give what was admitted ``timeout`` seconds, then abandon it."""
        self.draining = True
        logger.warning(
            "draining: admitting no new work; %d requests (%d items) in flight get %g s "
            "(SHUTDOWN_TIMEOUT_SECONDS)",
            len(self._tickets),
            self.items_in_flight,
            timeout,
        )
        if await self._idle_within(timeout):
            logger.info("drained: every admitted request finished")
            return
        left = list(self._tickets)
        logger.error(
            "drain: %d requests unfinished after %g s (SHUTDOWN_TIMEOUT_SECONDS): stopped, "
            "each answered with an error",
            len(left),
            timeout,
        )
        message = (
            f"the server shut down before this request finished (SHUTDOWN_TIMEOUT_SECONDS="
            f"{timeout:g}): its work was stopped; send it again, to another replica"
        )
        for ticket in left:
            ticket.abandoned.set_result(Unfinished(message))
        self.counts["abandoned"] += len(left)
        metrics.ABANDONED.inc(len(left))
        if not await self._idle_within(ABANDON_GRACE_SECONDS):
            logger.error("drain: %d abandoned requests did not answer", len(self._tickets))


def served_admission(request: Request) -> Admission:
    return request.app.state.admission


AdmissionState = Annotated[Admission, Depends(served_admission)]


class Admissible(Protocol):
    def item_count(self) -> int:
        """The engine requests this request makes."""


def admitted(model: type[BaseModel]) -> Callable[..., AsyncIterator[Ticket]]:
    """A route's dependency: its body (``model``, parsed once, shared with the route's own
    ``json_body``) admitted, the ticket held until the response has been sent."""

    async def ticket(
        request: Request,
        admission: AdmissionState,
        body: Annotated[Admissible, Depends(json_body(model))],
    ) -> AsyncIterator[Ticket]:
        held = admission.admit(request.url.path, body.item_count())
        try:
            yield held
        finally:
            admission.release(held)

    return ticket
