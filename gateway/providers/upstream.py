"""HTTP calls to an upstream with aiohttp errors mapped to ProviderError, shared by the HTTP providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import aiohttp
import orjson

from gateway.providers.base import ProviderConfig, ProviderError
from gateway.providers.http import client_timeout, get_session
from gateway.providers.sse import SSEEvent, iter_sse

MAX_ERROR_BODY = 8192  # bytes of an upstream error body kept for the message / logs

# Picks the human message out of an upstream error body; each provider knows its own envelope.
ErrorMessage = Callable[[Any], str | None]


def openai_error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("message") or error.get("type")
        if isinstance(error, str):
            return error
        return body.get("message") or body.get("detail")
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; rare from APIs, and the breaker has its own back-off


def http_error(
    config: ProviderConfig, status: int, raw: bytes, headers: Mapping[str, str], error_message: ErrorMessage
) -> ProviderError:
    raw = raw[:MAX_ERROR_BODY]
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = raw.decode("utf-8", "replace")
    message = error_message(body) if not isinstance(body, str) else None
    message = message or (body if isinstance(body, str) and body else f"HTTP {status}")
    return ProviderError(
        "http",
        f"{config.name}: upstream returned {status}: {message}",
        status=status,
        body=body,
        retry_after=_retry_after(headers),
    )


def transport_error(config: ProviderConfig, exc: BaseException) -> ProviderError:
    """aiohttp/OS exceptions → ProviderError. Timeouts first: aiohttp's timeouts are also connection errors
    and asyncio.TimeoutError is an OSError."""
    if isinstance(exc, asyncio.TimeoutError):
        return ProviderError("timeout", f"{config.name}: upstream timed out")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderError("malformed", f"{config.name}: upstream closed the response early ({exc})")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProviderError("malformed", f"{config.name}: unreadable upstream response ({exc.message})")
    return ProviderError("connect", f"{config.name}: cannot reach upstream ({type(exc).__name__}: {exc})")


TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError, OSError)


async def post_json(
    config: ProviderConfig,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    error_message: ErrorMessage = openai_error_message,
) -> dict[str, Any]:
    """POST and return the parsed JSON object, or raise ProviderError."""
    session = get_session()
    try:
        async with session.post(url, data=body, headers=headers, timeout=client_timeout(config)) as resp:
            raw = await resp.read()
            status = resp.status
            if status >= 400:
                raise http_error(config, status, raw, resp.headers, error_message)
    except TRANSPORT_ERRORS as exc:
        raise transport_error(config, exc) from exc
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProviderError("malformed", f"{config.name}: upstream sent invalid JSON ({exc})", body=raw[:512]) from exc
    if not isinstance(obj, dict):
        raise ProviderError("malformed", f"{config.name}: upstream sent JSON that is not an object")
    error = obj.get("error") if not obj.get("choices") and not obj.get("data") else None
    if error:  # some compatible servers answer 200 with an error envelope
        raise ProviderError(
            "http", f"{config.name}: upstream error: {error_message(obj) or error}", status=502, body=obj
        )
    return obj


async def stream_events(
    config: ProviderConfig,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    error_message: ErrorMessage = openai_error_message,
) -> AsyncGenerator[SSEEvent, None]:
    """POST and yield SSE events (the last one `partial` if the stream was cut inside it).

    Closing this generator (aclose, or cancelling the task awaiting it) closes the upstream connection at
    once; a stream read to its end hands the connection back to the pool."""
    session = get_session()
    try:
        resp = await session.post(url, data=body, headers=headers, timeout=client_timeout(config))
    except TRANSPORT_ERRORS as exc:
        raise transport_error(config, exc) from exc
    try:
        if resp.status >= 400:
            try:
                raw = await resp.content.read(MAX_ERROR_BODY)
            except TRANSPORT_ERRORS:
                raw = b""
            raise http_error(config, resp.status, raw, resp.headers, error_message)
        try:
            async for event in iter_sse(resp):
                yield event
        except TRANSPORT_ERRORS as exc:
            raise transport_error(config, exc) from exc
    finally:
        if resp.content.at_eof():
            resp.release()  # read to the end: the keep-alive connection goes back to the pool
        else:
            resp.close()  # abandoned mid-stream: drop the connection so upstream stops generating
