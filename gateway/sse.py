"""Server-sent events out, in OpenAI's framing: `data: <json>\n\n`, comments as keep-alives, `[DONE]`."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: relay each frame as it comes
}


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
