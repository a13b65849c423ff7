"""The hot path: POST /v1/chat/completions, /v1/completions and /v1/embeddings as Channels consumers.

Measured about twice as cheap as Django's view stack under uvicorn (bench/results). The consumer keeps
that advantage by not using the generic machinery it does not need: `__call__` reads the body itself
instead of dispatching each ASGI message through `await_many_dispatch` (a task per message, a thread
hop per message for close_old_connections, and a channel-layer channel per request). Database work
happens in the service's few units, each on the thread pool (config.db) or,
for the hold and the settlement, on the event loop's own database connection (billing.fastpath).

A plain non-streaming request is settled right after its response is sent (services.complete): the
client does not wait for that write; the body already carries the receipt id and exact costs it writes.

Streams: headers go out with the first upstream chunk (until then a failing route can fall back);
a keep-alive comment is written whenever upstream stays silent for GATEWAY_KEEPALIVE_SECONDS (which
sends the headers early if routing itself is slow); a disconnect watcher cancels the relay, which closes
upstream and settles what was produced as "partial".
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from channels.generic.http import AsyncHttpConsumer

from accounts.auth import client_ip_from_scope, extract_key
from config.errors import ApiError, envelope
from config.ids import request_id as new_request_id
from gateway import conf, services, sse, streaming

log = logging.getLogger(__name__)

_JSON = b"application/json"


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class InferenceConsumer(AsyncHttpConsumer):
    endpoint: services.Endpoint = services.CHAT

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.base_send = send
        self._receive = receive
        self.request_id = new_request_id()
        self.started = time.perf_counter()
        self._response_started = False
        self._finished = False
        self._client_gone = False
        self._lock = asyncio.Lock()
        self._last_write = time.monotonic()
        try:
            if scope["method"] != "POST":
                raise ApiError(405, "method_not_allowed", "Use POST for this endpoint.", headers={"Allow": "POST"})
            body = await self._read_body()
            if body is None:
                return  # the client left before sending its request
            await self.handle(body)
        except ApiError as exc:
            await self._send_error(exc)
        except Exception:
            log.exception("unhandled error in %s (%s)", type(self).__name__, self.request_id)
            await self._send_error(
                ApiError(500, "internal_error", "The server had an error while processing your request.")
            )

    async def _read_body(self) -> bytes | None:
        limit = conf.get("GATEWAY_MAX_BODY_BYTES")
        declared = _header(self.scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "request_too_large", f"The request body is larger than {limit} bytes.")
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "request_too_large", f"The request body is larger than {limit} bytes.")
            parts.append(chunk)
            if not message.get("more_body"):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def handle(self, body: bytes) -> None:
        scope = self.scope
        ctx = await services.authenticate(
            extract_key(scope["headers"]), client_ip=client_ip_from_scope(scope), scope=services.INFERENCE
        )
        outcome = await services.admit(
            ctx,
            self.endpoint,
            body,
            request_id=self.request_id,
            started=self.started,
            idempotency_key=_header(scope, b"idempotency-key"),
        )
        if isinstance(outcome, services.Reply):
            await self._respond(outcome.status, outcome.body, outcome.headers, outcome.content_type.encode())
        elif outcome.plan.stream:
            await self._stream(outcome)
        else:
            reply = await services.complete(outcome, settle_after_reply=conf.get("GATEWAY_SETTLE_AFTER_REPLY"))
            try:
                await self._respond(reply.status, reply.body, reply.headers, _JSON)
            finally:
                if reply.after is not None:  # the settlement, written once the client has its answer
                    await services.uncancellable(reply.after())

    # -- plain responses ---------------------------------------------------------------------------------

    def _headers(self, headers: dict[str, str], content_type: bytes) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", content_type), (b"x-request-id", self.request_id.encode())]
        out.extend((k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items())
        return out

    async def _respond(self, status: int, body: bytes, headers: dict[str, str], content_type: bytes) -> None:
        self._response_started = self._finished = True
        out = self._headers(headers, content_type)
        out.append((b"content-length", str(len(body)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": out})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_error(self, exc: ApiError) -> None:
        if self._finished:
            return
        if self._response_started:  # a stream is already open: report in-band and end it
            await self._write(streaming.error_frame(exc, self.request_id))
            await self._end()
            return
        body = orjson.dumps(
            envelope(exc.message, kind=exc.kind, code=exc.code, param=exc.param, request_id=self.request_id)
        )
        await self._respond(exc.status, body, exc.headers, _JSON)

    # -- streams -----------------------------------------------------------------------------------------

    async def _start_stream(self, headers: dict[str, str]) -> None:
        if self._response_started:
            return
        self._response_started = True
        out = self._headers(
            {**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, sse.HEADERS["Content-Type"].encode()
        )
        await self.send({"type": "http.response.start", "status": 200, "headers": out})

    async def _write(self, data: bytes) -> None:
        async with self._lock:
            self._last_write = time.monotonic()
            await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def _end(self) -> None:
        self._finished = True
        async with self._lock:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _keepalive(self, headers: dict[str, str]) -> None:
        interval = conf.get("GATEWAY_KEEPALIVE_SECONDS")
        while not self._finished:
            await asyncio.sleep(max(0.0, self._last_write + interval - time.monotonic()))
            if self._finished:
                return
            if time.monotonic() - self._last_write >= interval:
                async with self._lock:
                    if self._finished:
                        return
                    await self._start_stream(headers)
                    self._last_write = time.monotonic()
                    await self.send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})

    async def _watch_disconnect(self, task: asyncio.Task) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._finished:
                    self._client_gone = True
                    task.cancel()
                return

    async def _stream(self, adm: services.Admission) -> None:
        task = asyncio.current_task()
        ticker = asyncio.ensure_future(self._keepalive(adm.headers))
        watcher = asyncio.ensure_future(self._watch_disconnect(task))  # type: ignore[arg-type]
        try:
            relay = await streaming.open_stream(adm)
            async with self._lock:
                await self._start_stream(adm.headers)
            await relay.run(self._write)
            await self._end()
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            task.uncancel()  # type: ignore[union-attr]
            self._finished = True
        finally:
            ticker.cancel()
            watcher.cancel()


class ChatCompletionsConsumer(InferenceConsumer):
    endpoint = services.CHAT


class CompletionsConsumer(InferenceConsumer):
    endpoint = services.COMPLETIONS


class EmbeddingsConsumer(InferenceConsumer):
    endpoint = services.EMBEDDINGS
