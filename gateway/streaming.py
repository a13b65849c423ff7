"""The streaming variant of the completion path.

`open_stream` routes like the non-streaming path but only until upstream's first chunk arrives, so a
failing route can still fall back: nothing has been sent to the client yet. `StreamRelay.run` then
relays every chunk as an SSE frame the moment it arrives and always ends in exactly one settlement:

- upstream finished: settle "succeeded" with upstream's usage, then the usage chunk (if asked) and [DONE];
- the client went away (the task is cancelled): upstream is closed, and the tokens produced so far are
  counted and settled "partial";
- upstream broke mid-stream: an error frame is sent and the hold released (failed attempts cost nothing).

The settlement runs through services.uncancellable, so cancellation cannot skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from billing import pricing
from billing.models import Receipt
from config.errors import ApiError, envelope
from gateway import render, router, services, sse
from gateway.providers.base import ProviderError
from gateway.services import CHAT, Admission, elapsed_ms, fail, finish
from gateway.tokens import count_tokens

log = logging.getLogger(__name__)

Write = Callable[[bytes], Awaitable[None]]


class StreamRelay:
    def __init__(
        self,
        adm: Admission,
        iterator: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        routed: router.Routed,
        ttft_ms: int,
    ) -> None:
        self.adm = adm
        self.iterator = iterator
        self.first = first
        self.route = routed.route
        self.attempts = routed.attempts
        self.ttft_ms = ttft_ms
        self.usage: dict[str, Any] | None = None
        self.produced: list[str] = []
        self.transcript: list[bytes] | None = [] if adm.idempotency_key is not None else None
        # Chat chunks as relayed, kept (a list append each) so a stored completion can be assembled at
        # settlement: whether the team stores is only known inside the settling DB unit.
        self.chunks: list[dict[str, Any]] | None = [] if adm.plan.endpoint is CHAT else None
        self.created = int(time.time())

    # -- relaying ------------------------------------------------------------------------------------

    def _frame(self, chunk: dict[str, Any]) -> bytes | None:
        """Rewrite one upstream chunk for the client (our id and model); None when nothing is left to send."""
        usage = chunk.pop("usage", None)
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return None
        for choice in choices:
            delta = choice.get("delta")
            if delta is not None:  # chat
                text = delta.get("content")
                if text:
                    self.produced.append(text)
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    self.produced.append((function.get("name") or "") + (function.get("arguments") or ""))
            elif choice.get("text"):  # legacy completions
                self.produced.append(choice["text"])
        chunk["id"] = self.adm.completion_id
        chunk["model"] = self.adm.plan.model.id
        self.created = chunk.get("created") or self.created
        if self.chunks is not None:
            self.chunks.append(chunk)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def _send(self, write: Write, data: bytes) -> None:
        if self.transcript is not None:
            self.transcript.append(data)
        await write(data)

    async def run(self, write: Write) -> None:
        outcome = "partial"
        error: ProviderError | None = None
        try:
            chunk: dict[str, Any] | None = self.first
            while chunk is not None:
                data = self._frame(chunk)
                if data is not None:
                    await self._send(write, data)
                try:
                    chunk = await self.iterator.__anext__()
                except StopAsyncIteration:
                    chunk = None
            outcome = "succeeded"
        except ProviderError as exc:
            outcome, error = "failed", exc
            log.warning("stream %s broke mid-way: %s", self.adm.request_id, exc.message)
        finally:
            await self._close_upstream()
            receipt = await services.uncancellable(self._settle(outcome, error))  # even if the client left
        if outcome == "failed":
            body = envelope(
                "The upstream provider failed in the middle of the stream.",
                kind="upstream_error",
                code="upstream_error",
                param=None,
                request_id=self.adm.request_id,
            )
            await write(sse.event(body))
            return
        if receipt is not None and self.adm.plan.include_usage:
            await self._send(
                write,
                sse.frame(
                    render.usage_chunk(
                        completion_id=self.adm.completion_id,
                        created=self.created,
                        model=self.adm.plan.model.id,
                        object_name=self.adm.plan.endpoint.chunk_object,
                        receipt=receipt,
                    )
                ),
            )
        await write(sse.DONE)

    async def _close_upstream(self) -> None:
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is None:
            return
        try:
            await asyncio.shield(aclose())
        except (Exception, asyncio.CancelledError):  # closing a broken or cancelled upstream may fail; fine
            log.debug("closing upstream stream failed", exc_info=True)

    # -- money -----------------------------------------------------------------------------------------

    def _usage(self, outcome: str) -> pricing.Usage:
        if outcome == "succeeded" and self.usage:
            details = self.usage.get("prompt_tokens_details") or {}
            cached = min(int(details.get("cached_tokens") or 0), int(self.usage.get("prompt_tokens") or 0))
            return pricing.Usage(
                prompt_tokens=int(self.usage.get("prompt_tokens") or 0) - cached,
                completion_tokens=int(self.usage.get("completion_tokens") or 0),
                cached_tokens=cached,
            )
        # Upstream never reported usage (client left, or it did not send any): count what was produced.
        return pricing.Usage(
            prompt_tokens=self.adm.plan.prompt_estimate, completion_tokens=count_tokens("".join(self.produced))
        )

    async def _settle(self, outcome: str, error: ProviderError | None) -> Receipt | None:
        adm = self.adm
        if outcome == "failed":
            await fail(adm, error_code="upstream_error", attempts=self.attempts, route=self.route)
            return None
        meta = adm.meta(
            route=self.route,
            attempts=self.attempts,
            latency_ms=elapsed_ms(adm.started),
            ttft_ms=self.ttft_ms,
            streamed=True,
        )
        usage = self._usage(outcome)
        transcript = self.transcript
        include_usage = adm.plan.include_usage

        def render_body(receipt: Receipt) -> bytes:
            if transcript is None:
                return b""
            tail = (
                sse.frame(
                    render.usage_chunk(
                        completion_id=adm.completion_id,
                        created=self.created,
                        model=adm.plan.model.id,
                        object_name=adm.plan.endpoint.chunk_object,
                        receipt=receipt,
                    )
                )
                if include_usage
                else b""
            )
            return b"".join(transcript) + tail + sse.DONE

        def stored_body(receipt: Receipt) -> bytes:
            return render.completion_body(
                assemble_chat(self.chunks or (), created=self.created),
                completion_id=adm.completion_id,
                model=adm.plan.model.id,
                receipt=receipt,
            )

        try:
            receipt, _body = await finish(
                adm,
                usage=usage,
                meta=meta,
                status=outcome,
                render_body=render_body,
                stored_body=stored_body,
                content_type=sse.HEADERS["Content-Type"],
            )
        except Exception:
            log.exception("could not settle stream %s", adm.request_id)
            return None
        return receipt


def assemble_chat(chunks, *, created: int) -> dict[str, Any]:
    """The chat.completion object a stream of chat.completion.chunk objects adds up to: per choice the
    message (content, tool calls joined by index), finish_reason and logprobs. Usage is added by the caller."""
    choices: dict[int, dict[str, Any]] = {}
    fingerprint = None
    for chunk in chunks:
        fingerprint = chunk.get("system_fingerprint") or fingerprint
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = choices.setdefault(
                index,
                {
                    "role": "assistant",
                    "content": [],
                    "refusal": None,
                    "calls": {},
                    "finish_reason": None,
                    "logprobs": None,
                },
            )
            delta = part.get("delta") or {}
            if delta.get("role"):
                choice["role"] = delta["role"]
            if delta.get("content"):
                choice["content"].append(delta["content"])
            if delta.get("refusal"):
                choice["refusal"] = (choice["refusal"] or "") + delta["refusal"]
            for call in delta.get("tool_calls") or ():
                slot = choice["calls"].setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = call.get("id") or slot["id"]
                slot["type"] = call.get("type") or slot["type"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
            if part.get("logprobs"):
                choice["logprobs"] = part["logprobs"]
    out = []
    for index in sorted(choices):
        choice = choices[index]
        message: dict[str, Any] = {
            "role": choice["role"],
            "content": "".join(choice["content"]) if choice["content"] else None,
            "refusal": choice["refusal"],
        }
        if choice["calls"]:
            message["tool_calls"] = [choice["calls"][i] for i in sorted(choice["calls"])]
        out.append(
            {
                "index": index,
                "message": message,
                "logprobs": choice["logprobs"],
                "finish_reason": choice["finish_reason"],
            }
        )
    body: dict[str, Any] = {"object": "chat.completion", "created": created, "choices": out}
    if fingerprint:
        body["system_fingerprint"] = fingerprint
    return body


async def open_stream(adm: Admission) -> StreamRelay:
    """Route until the first chunk arrives (fallback is still possible). Raises ApiError (hold released)."""
    p = adm.plan
    chat = p.endpoint is CHAT

    async def first_chunk(provider, route):
        if chat:
            iterator = provider.stream_chat(p.payload, upstream_model=route.upstream_model)
        else:
            iterator = provider.stream_completion(p.payload, upstream_model=route.upstream_model)
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            raise ProviderError("malformed", f"{route.provider}: upstream ended the stream without data") from None
        except BaseException:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):  # already failing; the original error matters
                    await aclose()
            raise
        return iterator, first

    routed = await services.route_or_release(adm, first_chunk, interrupted_code="client_disconnected")
    iterator, first = routed.value
    return StreamRelay(adm, iterator, first, routed, ttft_ms=elapsed_ms(adm.started))


def error_frame(exc: ApiError, request_id: str) -> bytes:
    """An error after the stream's headers went out (keep-alives were sent while routing)."""
    return sse.event(envelope(exc.message, kind=exc.kind, code=exc.code, param=exc.param, request_id=request_id))
