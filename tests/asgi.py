"""The production ASGI application (config.asgi.application), driven in-process: what the tests send is what
a server serves, through the same transport, middleware and error envelopes.

`V1(key)` posts and gets under /v1 like a client with that key. Sync tests (whose rows live in the test
transaction) call it directly: the application runs on a fresh event loop in this thread, and the database
units it runs in threads come back to this thread's connection (settings.DB_THREAD_SENSITIVE, set by the
gateway fixtures), so they see the test's rows. Async tests use the `a*` methods.

Responses are collected whole (`Response.content`); `chunks` keeps each body message as sent (SSE frames
arrive one per message), and `disconnect_after=N` makes the client leave after N body messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from asgiref.sync import async_to_sync
from django.core import signals
from django.db import close_old_connections


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]  # lower-cased names
    chunks: list[bytes] = field(default_factory=list)

    @property
    def content(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return orjson.loads(self.content)

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def has_header(self, name: str) -> bool:
        return name.lower() in self.headers

    def __contains__(self, name: str) -> bool:  # `"Retry-After" in response`, as with Django's responses
        return self.has_header(name)

    def events(self) -> list[bytes]:
        """SSE frames (without their blank-line terminator)."""
        return [frame for frame in self.content.split(b"\n\n") if frame]


@contextlib.contextmanager
def _no_connection_closing() -> Iterator[None]:
    """Django closes "old" connections at each request's start and end; inside a test's transaction that would
    close the test's own connection (Django's test client disconnects these handlers the same way)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


async def request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    disconnect_after: int | None = None,
    chunk_size: int | None = None,
) -> Response:
    from config.asgi import application

    path, _, query = path.partition("?")
    raw_headers = [(b"host", b"testserver")]
    for name, value in (headers or {}).items():
        raw_headers.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    if body and not any(name == b"content-type" for name, _ in raw_headers):
        raw_headers.append((b"content-type", b"application/json"))
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": client,
        "server": ("testserver", 80),
    }
    pieces = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] if chunk_size and body else [body]
    inbox: asyncio.Queue = asyncio.Queue()
    for i, piece in enumerate(pieces):
        inbox.put_nowait({"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1})
    response = Response(0, {})
    done = asyncio.Event()
    gone = asyncio.Event()

    async def receive() -> dict:
        if not inbox.empty():
            return inbox.get_nowait()
        waiter = asyncio.ensure_future(gone.wait())
        finished = asyncio.ensure_future(done.wait())
        await asyncio.wait({waiter, finished}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        finished.cancel()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            response.status_code = message["status"]
            response.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            if message.get("body"):
                response.chunks.append(message["body"])
            if disconnect_after is not None and len(response.chunks) >= disconnect_after:
                gone.set()
            if not message.get("more_body"):
                done.set()

    with _no_connection_closing():
        await application(scope, receive, send)
    return response


class V1:
    """Requests to /v1 with an API key (None: no Authorization header)."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        out.update(headers or {})
        return out

    @staticmethod
    def _body(body) -> bytes:
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        return orjson.dumps(body)

    async def apost(self, path: str, body: Any = b"", headers: dict[str, str] | None = None, **kwargs) -> Response:
        return await request("POST", f"/v1{path}", body=self._body(body), headers=self._headers(headers), **kwargs)

    async def aget(self, path: str, headers: dict[str, str] | None = None, **params) -> Response:
        query = f"?{urlencode(params)}" if params else ""
        return await request("GET", f"/v1{path}{query}", headers=self._headers(headers))

    def post(self, path: str, body: Any = b"", headers: dict[str, str] | None = None, **kwargs) -> Response:
        return async_to_sync(self.apost)(path, body, headers, **kwargs)

    def get(self, path: str, headers: dict[str, str] | None = None, **params) -> Response:
        return async_to_sync(self.aget)(path, headers, **params)
