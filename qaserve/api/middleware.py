"""X-Backend on every response: which engine answered, so a fallback is never silent."""

from __future__ import annotations


class BackendHeader:
    """Pure ASGI (no per-request task, unlike BaseHTTPMiddleware): the lifespan puts the
    backend's name on ``app.state.backend``; until then no header is added."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        backend = getattr(scope["app"].state, "backend", None)
        if backend is None:
            return await self.app(scope, receive, send)
        header = (b"x-backend", backend.encode())

        async def send_with_backend(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        return await self.app(scope, receive, send_with_backend)
