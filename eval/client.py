"""The server's HTTP contract from the caller's side: wait for GET /, send /predict, time it.

Requests run concurrently up to a limit; each reply keeps its client-side start and end
(perf_counter) and the server's own X-Process-Seconds / X-Output-Tokens when it sends them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from tqdm import tqdm

from eval.errors import EvalError

HEALTH_POLL_SECONDS = 0.5
SMALL_CALL_SECONDS = 30


@dataclass(frozen=True)
class Request:
    indices: tuple[int, ...]  # positions of its prompts in the evaluated set
    payload: dict  # the /predict body: "prompt" (a string or a list) and any overrides


@dataclass(frozen=True)
class Reply:
    indices: tuple[int, ...]
    texts: list[str]
    started: float
    finished: float
    server_seconds: float | None  # X-Process-Seconds, if the server sends it
    output_tokens: int | None  # X-Output-Tokens, if the server sends it

    @property
    def latency(self) -> float:
        return self.finished - self.started


def batch_request(questions: list[str]) -> Request:
    """All questions in one /predict call, as the evaluation machine sends them in batch mode."""
    return Request(tuple(range(len(questions))), {"prompt": questions})


def single_requests(questions: list[str]) -> list[Request]:
    return [Request((i,), {"prompt": question}) for i, question in enumerate(questions)]


class ServerClient:
    def __init__(self, url: str, api_key: str | None = None):
        self.url = url.rstrip("/")
        # Only a server with PROTECT_PREDICT=1 asks for a key on these routes.
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def wait_ready(self, timeout: float) -> str:
        """Poll GET / until it answers 200; return its "status" ("batch", "ok", ...)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = httpx.get(self.url + "/", headers=self.headers, timeout=10)
                if response.status_code == 200:
                    return self._health_status(response)
                if response.status_code in (401, 403):
                    raise EvalError(
                        f"GET {self.url}/ answered {response.status_code}: "
                        "the server wants an API key (--api-key)"
                    )
                last = f"GET / answered {response.status_code}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise EvalError(f"server at {self.url} not ready within {timeout:g} s ({last})")
            time.sleep(HEALTH_POLL_SECONDS)

    def _health_status(self, response: httpx.Response) -> str:
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError):
            status = None
        if not isinstance(status, str):
            body = response.text[:200]
            raise EvalError(f'GET {self.url}/ answered 200 without {{"status": ...}}: {body}')
        return status

    def get_json(self, path: str) -> dict | None:
        """A GET answered with a JSON object; None when the server has no such route (404)."""
        response = self._call("GET", path)
        return None if response.status_code == 404 else self._json_of(response)

    def post_json(self, path: str, body: dict) -> dict:
        return self._json_of(self._call("POST", path, json=body))

    def _call(self, method: str, path: str, **body) -> httpx.Response:
        try:
            return httpx.request(
                method, self.url + path, headers=self.headers, timeout=SMALL_CALL_SECONDS, **body
            )
        except httpx.TransportError as exc:
            raise EvalError(
                f"{method} {self.url}{path} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _json_of(response: httpx.Response) -> dict:
        request = f"{response.request.method} {response.request.url}"
        if response.status_code != 200:
            raise EvalError(f"{request} answered {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise EvalError(f"{request} answered no JSON: {response.text[:300]}") from exc

    def send_all(
        self, requests: list[Request], concurrency: int, timeout: float, progress: str
    ) -> list[Reply]:
        """Send every request, at most ``concurrency`` in flight; replies in request order."""
        total = sum(len(r.indices) for r in requests)
        with tqdm(total=total, desc=progress, unit="q", leave=False) as bar:
            return asyncio.run(self._send_all(requests, concurrency, timeout, bar))

    async def _send_all(
        self, requests: list[Request], concurrency: int, timeout: float, bar: tqdm
    ) -> list[Reply]:
        # aiohttp, not httpx: httpx's AsyncClient stalls requests on reused pooled connections
        # under concurrency (encode/httpx#3215); here a second wave of 64 singles took 8-23 s
        # with it against 1.5 s with aiohttp, which would understate the server's tokens/s.
        connector = aiohttp.TCPConnector(limit=concurrency)
        limit = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(
            headers=self.headers, connector=connector, timeout=limit
        ) as http:
            gate = asyncio.Semaphore(concurrency)

            async def one(request: Request) -> Reply:
                async with gate:
                    reply = await _post(http, self.url + "/predict", request, timeout)
                bar.update(len(request.indices))
                return reply

            return list(await asyncio.gather(*map(one, requests)))


async def _post(http: aiohttp.ClientSession, url: str, request: Request, timeout: float) -> Reply:
    count = len(request.indices)
    started = time.perf_counter()
    try:
        async with http.post(url, json=request.payload) as response:
            status, body, headers = response.status, await response.text(), response.headers
    except asyncio.TimeoutError as exc:
        raise EvalError(
            f"POST /predict ({count} prompts) had no answer within --timeout {timeout:g} s"
        ) from exc
    except aiohttp.ClientError as exc:
        raise EvalError(f"POST /predict failed: {type(exc).__name__}: {exc}") from exc
    finished = time.perf_counter()
    texts = _answers(status, body, count, single=isinstance(request.payload["prompt"], str))
    return Reply(
        indices=request.indices,
        texts=texts,
        started=started,
        finished=finished,
        server_seconds=_header(headers, "X-Process-Seconds", float),
        output_tokens=_header(headers, "X-Output-Tokens", int),
    )


def _answers(status: int, body: str, count: int, single: bool) -> list[str]:
    if status != 200:
        hint = " (a batch over MAX_BATCH_SIZE? try --limit or --mode concurrent)"
        extra = hint if status == 422 and not single else ""
        raise EvalError(f"POST /predict answered {status}{extra}: {body[:500]}")
    try:
        answer = json.loads(body)["response"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f'POST /predict answered without "response": {body[:300]}') from exc
    texts = [answer] if single else answer
    if not isinstance(texts, list) or len(texts) != count:
        got = len(texts) if isinstance(texts, list) else type(texts).__name__
        raise EvalError(f"POST /predict sent {count} prompts and got {got} answers back")
    if not all(isinstance(text, str) for text in texts):
        raise EvalError("POST /predict answered a response item that is not a string")
    return texts


def _header(headers: Mapping[str, str], name: str, kind: type):
    value = headers.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError as exc:
        raise EvalError(f"header {name}: {value!r} is not a {kind.__name__}") from exc
