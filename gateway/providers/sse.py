"""Incremental Server-Sent Events parser for upstream streams.

Network reads split a stream anywhere: inside a field, between "\\r" and "\\n", inside a multi-byte
UTF-8 character. The parser keeps bytes until an event is complete (a blank line), so callers see
whole events only. The common frame, a single `data: …` line, takes a fast path with no line split.
Data stays `bytes` (orjson parses bytes directly; decoding first would be a copy).

`finish()` returns what was left after the last complete event, marked `partial`; callers treat it,
like a missing terminator (`[DONE]`, `message_stop`), as a truncated stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import NamedTuple

import aiohttp


class SSEEvent(NamedTuple):
    event: str  # "" when the event had no `event:` field (OpenAI's frames)
    data: bytes
    partial: bool = False  # the stream ended inside this event (no blank line after it)


class SSEParser:
    __slots__ = ("_buf", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes from the wire; return the events completed by them."""
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" in chunk:
            # "\r\n" may be split across reads: hold a trailing "\r" back until we see what follows it.
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        old = self._buf
        if old:
            buf = old + chunk
            search_from = len(old) - 1  # a "\n\n" may straddle the old and new bytes
        else:
            buf = chunk
            search_from = 0
        end = buf.find(b"\n\n", search_from)
        if end < 0:
            self._buf = buf
            return []
        events: list[SSEEvent] = []
        start = 0
        while end >= 0:
            event = _parse_block(buf[start:end])
            if event is not None:
                events.append(event)
            start = end + 2
            end = buf.find(b"\n\n", start)
        self._buf = buf[start:]
        return events

    def finish(self) -> SSEEvent | None:
        """End of stream. Bytes after the last blank line mean the stream was cut: they come back as a
        `partial` event, because a terminator such as `data: [DONE]` without its blank line is common and
        only the caller knows whether the leftover is one."""
        rest = self._buf.strip(b"\n")
        self._buf = b""
        self._pending_cr = False
        if not rest:
            return None
        event = _parse_block(rest)
        return SSEEvent(event.event, event.data, True) if event is not None else SSEEvent("", b"", True)


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return SSEEvent("", block[6:])
    event = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # blank or comment (keep-alive)
        field, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
        # `id` and `retry` do not matter for a one-shot upstream response
    if not data:
        return None
    return SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))


async def iter_sse(response: aiohttp.ClientResponse) -> AsyncGenerator[SSEEvent, None]:
    """Events from an aiohttp response as they arrive; the last one is `partial` if the stream was cut."""
    parser = SSEParser()
    feed = parser.feed
    async for chunk in response.content.iter_any():
        for event in feed(chunk):
            yield event
    rest = parser.finish()
    if rest is not None:
        yield rest
