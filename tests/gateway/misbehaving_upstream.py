"""A fake OpenAI-compatible (and scriptable) upstream on 127.0.0.1 that misbehaves on request.

It runs an aiohttp server on a free port in a background thread with its own event loop, so both
sync tests and async tests (on their own loop) can call it.

    def test_it_falls_back(upstream):             # the fixture below (registered in tests/conftest.py):
        ...                                        # one server per session, its script and counts reset per test

    config = ProviderConfig(kind="openai", name="flaky", base_url=upstream.base_url, api_key="sk-test",
                            timeout_seconds=2, options={"read_timeout_seconds": 0.5})

`base_url` ends in /v1: POST /v1/chat/completions, /v1/completions, /v1/embeddings, GET /v1/models.

Behaviour is chosen per request by the `x-misbehave` header, else by the request's `model`:
`<mode>[-c<chunks>][-d<ms between chunks>][-l<ms before the response>]`, e.g. "ok-c20-d50".
Modes:
    ok            200 JSON, or an SSE stream when "stream": true (chunks, finish chunk, usage chunk when
                  stream_options.include_usage, then [DONE]); default 5 chunks, no delay
    no-usage      like ok but never sends usage (the gateway must count)
    status-<N>    HTTP N with OpenAI's error envelope, e.g. status-500, status-429 (Retry-After: 1),
                  status-400, status-503
    fail-<K>      HTTP 500 for the first K requests with this exact model name, then ok (retries, breakers)
    hang          accepts the request and never answers (until the server stops or 60 s pass)
    hang-stream   sends the headers and one chunk, then goes silent
    drop          streams half the chunks, then closes the connection without ending the body
                  (non-stream: closes the connection before answering)
    malformed     200 with a body that is not JSON (stream: a chunk whose data is not JSON)
    truncated     a stream that ends cleanly but without [DONE] (and cut inside its last event)
    slow          a stream with the chunk delay defaulting to 200 ms
    error-200     200 whose JSON body is an error envelope (stream: an error chunk instead of the first delta)
    usage-negative, usage-huge, usage-text
                  like ok, but the usage reports -5 prompt tokens / 5e9 completion tokens / "abc"
Instead of a mode, `upstream.script(path, body, ...)` answers the next requests to `path` with fixed
bytes (recorded fixtures), optionally written in small pieces to exercise arbitrary chunk boundaries.

What it observed, for assertions:
    upstream.requests            list of Recorded(path, headers, body (parsed JSON or raw bytes))
    upstream.count(model=None)   requests seen (for one model name, or all)
    upstream.disconnects         streams whose client went away before the end
    upstream.connections         distinct client connections used (keep-alive reuse)
    upstream.wait_for_disconnect(timeout) → bool
    upstream.reset()             forget all of that (and the fail-K counters)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

_KNOBS = re.compile(r"-([cdl])(\d+)")


def _hostile(mode: str, usage: dict[str, Any]) -> dict[str, Any]:
    """The usage block as a broken or hostile upstream would report it."""
    if mode == "usage-negative":
        return {**usage, "prompt_tokens": -5}
    if mode == "usage-huge":
        return {**usage, "completion_tokens": 5e9}
    if mode == "usage-text":
        return {**usage, "prompt_tokens": "abc"}
    return usage


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    piece_size: int | None = None  # write the body in pieces of this many bytes
    piece_delay: float = 0.0
    times: int | None = 1  # None: every request to this path


@dataclass
class _Plan:
    mode: str
    chunks: int = 5
    delay: float = 0.0
    latency: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _plan(model: str, header: str | None) -> _Plan:
    spec = header or model or "ok"
    knobs = dict((k, int(v)) for k, v in _KNOBS.findall(spec))
    mode = _KNOBS.sub("", spec)
    plan = _Plan(mode=mode)
    plan.chunks = knobs.get("c", 5)
    plan.delay = knobs.get("d", 200 if mode == "slow" else 0) / 1000
    plan.latency = knobs.get("l", 0) / 1000
    return plan


class MisbehavingUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self._peers: set[Any] = set()
        self._counts: Counter[str] = Counter()
        self._scripts: dict[str, list[Script]] = {}
        self._lock = threading.Lock()
        self._disconnected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MisbehavingUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="misbehaving-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("misbehaving upstream did not start")
        return self

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/{endpoint:.*}", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> MisbehavingUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and observations -----------------------------------------------------------------

    def script(
        self,
        path: str,
        body: bytes | str | dict,
        *,
        status: int = 200,
        content_type: str | None = None,
        piece_size: int | None = None,
        piece_delay: float = 0.0,
        times: int | None = 1,
    ) -> None:
        """Answer the next `times` requests to `path` (e.g. "/v1/messages") with these bytes."""
        if isinstance(body, dict):
            body = orjson.dumps(body)
        elif isinstance(body, str):
            body = body.encode()
        content_type = content_type or (
            "text/event-stream" if body.lstrip().startswith((b"event:", b"data:")) else "application/json"
        )
        with self._lock:
            self._scripts.setdefault(path, []).append(
                Script(body, status, content_type, piece_size, piece_delay, times)
            )

    def count(self, model: str | None = None) -> int:
        with self._lock:
            return sum(self._counts.values()) if model is None else self._counts[model]

    @property
    def connections(self) -> int:
        """Distinct client connections (by peer address) the recorded requests came over."""
        with self._lock:
            return len(self._peers)

    def wait_for_disconnect(self, timeout: float = 5.0) -> bool:
        return self._disconnected.wait(timeout)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._peers.clear()
            self._counts.clear()
            self._scripts.clear()
            self.disconnects = 0
            self._disconnected.clear()

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self._disconnected.set()

    # -- handlers ---------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "ok", "object": "model", "owned_by": "fake"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw
        model = body.get("model", "") if isinstance(body, dict) else ""
        with self._lock:
            self.requests.append(Recorded(request.path, dict(request.headers), body))
            self._peers.add(request.transport.get_extra_info("peername") if request.transport else None)
            self._counts[model] += 1
            seen = self._counts[model]
            scripts = self._scripts.get(request.path)
            script = scripts[0] if scripts else None
            if script is not None and script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    scripts.pop(0)
        if script is not None:
            return await self._scripted(request, script)

        plan = _plan(model, request.headers.get("x-misbehave"))
        if plan.latency:
            await asyncio.sleep(plan.latency)
        mode = plan.mode
        if mode.startswith("fail-"):
            mode = "status-500" if seen <= int(mode[5:]) else "ok"
        if mode.startswith("status-"):
            status = int(mode[7:])
            headers = {"Retry-After": "1"} if status in (429, 503) else {}
            return web.json_response(
                {
                    "error": {
                        "message": f"fake upstream says {status}",
                        "type": "fake_error",
                        "param": None,
                        "code": str(status),
                    }
                },
                status=status,
                headers=headers,
            )
        if mode == "hang":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 60)
            return web.Response(status=503)
        endpoint = request.match_info["endpoint"]
        stream = isinstance(body, dict) and bool(body.get("stream"))
        if mode == "drop" and not stream:
            request.transport.close()
            return web.Response(status=500)
        if mode == "malformed" and not stream:
            return web.Response(body=b'{"id": "chatcmpl-broken", "choices": [', content_type="application/json")
        if mode == "error-200" and not stream:
            return web.json_response({"error": {"message": "overloaded, try later", "type": "server_error"}})
        if endpoint == "embeddings":
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            return web.json_response(
                {
                    "object": "list",
                    "model": model,
                    "data": [{"object": "embedding", "index": i, "embedding": [0.6, 0.8]} for i in range(len(inputs))],
                    **(
                        {}
                        if mode == "no-usage"
                        else {"usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}}
                    ),
                }
            )
        chat = endpoint == "chat/completions"
        if not stream:
            return web.json_response(self._completion(model, chat, plan, mode))
        return await self._stream(request, body, model, chat, plan, mode)

    @staticmethod
    def _completion(model: str, chat: bool, plan: _Plan, mode: str) -> dict[str, Any]:
        text = " ".join(f"word{i}" for i in range(plan.chunks))
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if chat
            else {"index": 0, "text": text, "finish_reason": "stop"}
        )
        out: dict[str, Any] = {
            "id": "chatcmpl-fake" if chat else "cmpl-fake",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "x_unknown_upstream_field": True,
        }
        if mode != "no-usage":
            out["usage"] = _hostile(
                mode,
                {
                    "prompt_tokens": 11,
                    "completion_tokens": plan.chunks,
                    "total_tokens": 11 + plan.chunks,
                    "prompt_tokens_details": {"cached_tokens": 2},
                },
            )
        return out

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str, chat: bool, plan: _Plan, mode: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }

        def frame(obj: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        def choice(text: str | None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
            if not chat:
                return {**base, "choices": [{"index": 0, "text": text or "", "finish_reason": finish}]}
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and mode != "no-usage"
        drop_after = plan.chunks // 2 if mode == "drop" else None
        try:
            if mode == "error-200":
                await response.write(frame({"error": {"message": "overloaded, try later", "code": 503}}))
                await response.write_eof()
                return response
            if chat:
                await response.write(frame(choice("", role=True)))
            for i in range(plan.chunks):
                if drop_after is not None and i == drop_after:
                    request.transport.close()  # mid-body: the chunked encoding never terminates
                    return response
                if mode == "malformed" and i == 1:
                    await response.write(b"data: {not json at all\n\n")
                    continue
                if plan.delay:
                    await asyncio.sleep(plan.delay)
                await response.write(frame(choice(f"word{i} ")))
                if mode == "hang-stream":
                    await asyncio.wait_for(self._stopping.wait(), 60)
            await response.write(frame(choice(None if chat else "", "stop")))
            if include_usage:
                await response.write(
                    frame(
                        {
                            **base,
                            "choices": [],
                            "usage": _hostile(
                                mode,
                                {
                                    "prompt_tokens": 11,
                                    "completion_tokens": plan.chunks,
                                    "total_tokens": 11 + plan.chunks,
                                },
                            ),
                        }
                    )
                )
            if mode == "truncated":
                await response.write(b'data: {"id": "chatcmpl-fake", "choi')
                await response.write_eof()
                return response
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self._note_disconnect()
            raise
        return response

    async def _scripted(self, request: web.Request, script: Script) -> web.StreamResponse:
        if script.piece_size is None:
            return web.Response(body=script.body, status=script.status, content_type=script.content_type)
        response = web.StreamResponse(status=script.status, headers={"Content-Type": script.content_type})
        await response.prepare(request)
        try:
            for start in range(0, len(script.body), script.piece_size):
                await response.write(script.body[start : start + script.piece_size])
                if script.piece_delay:
                    await asyncio.sleep(script.piece_delay)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self._note_disconnect()
            raise
        return response


@pytest.fixture(scope="session")
def upstream_server():
    with MisbehavingUpstream() as server:
        yield server


@pytest.fixture
def upstream(upstream_server: MisbehavingUpstream) -> MisbehavingUpstream:
    upstream_server.reset()
    return upstream_server
