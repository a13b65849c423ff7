"""The one transport of every charging /v1 operation: a Channels HTTP consumer that production and the tests
both reach through config.asgi.application (gateway/urls.py maps each operation's path to it).

It reads the body (one limit for every path), hands a `Call` to the pipeline (gateway/pipeline.py) and writes
what comes back: a plain reply, or a stream. Every error leaves in the operation's dialect (OpenAI's envelope,
or Anthropic's on /v1/messages), with X-Request-Id.

Measured about twice as cheap as Django's view stack under uvicorn (bench/results): `__call__` reads the body
itself instead of dispatching each ASGI message through `await_many_dispatch` (a task per message, a thread
hop per message for close_old_connections, and a channel-layer channel per request).

A plain request is settled right after its response is sent: the client does not wait for that write; the
body already carries the receipt id and exact costs it writes. Streams: headers go out with the first
upstream chunk (until then a failing route can fall back); a keep-alive comment is written whenever upstream
stays silent for GATEWAY_KEEPALIVE_SECONDS (which sends the headers early if routing itself is slow); a
disconnect watcher cancels the relay, which closes upstream and settles what was produced as "partial".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from channels.generic.http import AsyncHttpConsumer
from django.db import InterfaceError, OperationalError
from redis.exceptions import RedisError

from config import logs, metrics, versions
from config.errors import ApiError
from config.ids import request_id as new_request_id
from config.net import client_ip_from_scope
from gateway import conf, errors, pipeline, sse
from gateway.operations.base import Call, Operation

log = logging.getLogger(__name__)

_JSON = b"application/json"
_VERSION_HEADER = versions.HEADER.lower()


def too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"The request body is larger than {limit} bytes.")


class V1Consumer(AsyncHttpConsumer):
    """Serves one operation (`op`), or its estimate (`estimate=True`); set by gateway/urls.py via as_asgi()."""

    def __init__(self, *, op: Operation, estimate: bool = False) -> None:
        super().__init__()
        self.op = op
        self.estimate = estimate

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
        self.version = versions.CURRENT
        self.status = 0
        self.call: Call | None = None
        self.log_fields = logs.start_request(self.request_id)
        task = asyncio.current_task()
        if task is not None:
            pipeline.requests_in_flight.add(task)
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self.version = versions.resolve(headers.get(_VERSION_HEADER))  # before anything else
            if scope["method"] != "POST":
                raise ApiError(405, "method_not_allowed", "Use POST for this endpoint.", headers={"Allow": "POST"})
            body = await self._read_body(headers)
            if body is None:
                return  # the client left before sending its request
            self.call = call = Call(
                op=self.op,
                request_id=self.request_id,
                started=self.started,
                headers=headers,
                body=body,
                client_ip=client_ip_from_scope(scope),
                log_fields=self.log_fields,
            )
            await self.handle(call)
        except ApiError as exc:
            await self._send_error(exc)
        except (RedisError, OperationalError, InterfaceError) as exc:
            log.warning("%s: a backing service is unavailable (%s)", self.request_id, type(exc).__name__)
            await self._send_error(errors.unavailable())
        except Exception:
            log.exception("unhandled error in %s (%s)", self.op.path, self.request_id)
            await self._send_error(
                ApiError(500, "internal_error", "The server had an error while processing your request.")
            )
        finally:
            if task is not None:
                pipeline.requests_in_flight.discard(task)
            self._account()

    def _account(self) -> None:
        """The request's metrics and its access line (config/metrics.py, config/logs.py)."""
        call, seconds = self.call, time.perf_counter() - self.started
        ctx = call.ctx if call is not None else None
        model = call.model.id if call is not None and call.model is not None else "unknown"
        endpoint = self.op.name + ("/estimate" if self.estimate else "")
        mode = ctx.mode if ctx is not None else "none"
        metrics.child(metrics.requests, endpoint, model, metrics.status_class(self.status), mode).inc()
        metrics.child(metrics.request_seconds, endpoint).observe(seconds)
        if logs.access.isEnabledFor(logging.INFO):
            logs.access.info(
                "%s %s %s",
                self.scope["method"],
                self.scope["path"],
                self.status,
                extra={
                    "method": self.scope["method"],
                    "path": self.scope["path"],
                    "status": self.status,
                    "latency_ms": int(seconds * 1000),
                },
            )

    async def _read_body(self, headers: dict[str, str]) -> bytes | None:
        limit = conf.get("GATEWAY_MAX_BODY_BYTES")
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            parts.append(chunk)
            if not message.get("more_body"):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def handle(self, call: Call) -> None:
        if self.estimate:
            reply = await pipeline.estimate(call)
            await self._respond(reply.status, reply.body, reply.headers, reply.content_type.encode())
            return
        outcome = await pipeline.run(call)
        if outcome is None:
            await self._stream(call)
            return
        try:
            await self._respond(outcome.status, outcome.body, outcome.headers, outcome.content_type.encode())
        finally:
            if outcome.after is not None:  # the settlement, written once the client has its answer
                await pipeline.uncancellable(outcome.after())

    # -- plain responses ---------------------------------------------------------------------------------

    def _headers(self, headers: dict[str, str], content_type: bytes) -> list[tuple[bytes, bytes]]:
        out = [
            (b"content-type", content_type),
            (b"x-request-id", self.request_id.encode()),
            (_VERSION_HEADER.encode(), self.version.encode()),
        ]
        for name, value in (*self.op.dialect.error_headers(self.request_id).items(), *headers.items()):
            out.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
        return out

    async def _respond(self, status: int, body: bytes, headers: dict[str, str], content_type: bytes) -> None:
        self._response_started = self._finished = True
        self.status = status
        out = self._headers(headers, content_type)
        out.append((b"content-length", str(len(body)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": out})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_error(self, exc: ApiError) -> None:
        if self._finished:
            return
        if self._response_started:  # a stream is already open: report in-band and end it
            await self._write(self.op.dialect.stream_error(exc, self.request_id))
            await self._end()
            return
        await self._respond(exc.status, self.op.dialect.error_body(exc, self.request_id), exc.headers, _JSON)

    # -- streams -----------------------------------------------------------------------------------------

    async def _start_stream(self, headers: dict[str, str]) -> None:
        if self._response_started:
            return
        self._response_started = True
        self.status = 200
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

    async def _stream(self, call: Call) -> None:
        task = asyncio.current_task()
        assert task is not None
        headers = call.response_headers
        ticker = asyncio.ensure_future(self._keepalive(headers))
        watcher = asyncio.ensure_future(self._watch_disconnect(task))
        try:
            relay = await pipeline.open_stream(call)
            async with self._lock:
                await self._start_stream(headers)
            await relay.run(self._write)
            await self._end()
        except asyncio.CancelledError:
            task.uncancel()
            if self._client_gone:
                self._finished = True
                return
            # The server is stopping (its grace period ran out): what was produced is settled already; say so
            # in-band and end the stream rather than dropping it.
            with contextlib.suppress(Exception):
                await self._send_error(
                    ApiError(
                        503,
                        "server_shutting_down",
                        "The server is restarting: this "
                        "stream was cut and charged only for what it produced. Retry it.",
                    )
                )
        finally:
            ticker.cancel()
            watcher.cancel()
