"""POST /v1/messages (Anthropic's Messages API, plain and streamed) and POST /v1/messages/count_tokens, over every
provider, billed exactly like chat, errors in Anthropic's envelope.

A route whose provider speaks Messages itself (gateway/providers/anthropic.py: `messages`, `stream_messages`)
gets the client's body as it came (only `model` replaced, `anthropic-beta` forwarded); every other route (OpenAI
and compatible servers, the simulator) gets the chat translation (gateway/translate/messages.py) and its answer
is translated back. Either way the stream view sees Anthropic's events: it relays them with our id and model,
holds back upstream's message_delta and message_stop, and ends with its own, whose usage is the receipt's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from billing.models import Receipt
from config.errors import ApiError
from gateway import openapi, render
from gateway.catalog import Needs, RouteEntry
from gateway.dialects import ANTHROPIC
from gateway.models import ModelKind
from gateway.operations.base import Call, Operation, Result, StreamView
from gateway.providers.anthropic import usage_from_anthropic
from gateway.providers.base import Provider, ProviderError, UpstreamUsage
from gateway.tokens import count_prompt_tokens, count_tokens
from gateway.translate import messages as tr


def _native(provider: Provider, call: Call):
    """The provider's own Messages methods, if it has them; otherwise the request must translate onto chat (a
    400 for this route if it uses what only Anthropic serves: no other route would answer it differently)."""
    native = getattr(provider, "messages", None), getattr(provider, "stream_messages", None)
    if native[0] is None:
        reason = tr.untranslatable(call.payload)
        if reason:
            raise ProviderError("http", reason, status=400, retryable=False)
    return native


class MessageStream(StreamView):
    """Anthropic's events, from its own stream or from the chat translation: relayed with our id and model; its
    message_delta and message_stop are held back, and the stream ends with ours, whose usage is the receipt's."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.usage: dict[str, Any] = {}  # Anthropic's, merged from message_start and message_delta
        self.delta_reported = False
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.pieces: list[str] = []

    def text(self, chunk: dict[str, Any]) -> str:
        kind = chunk.get("type")
        if kind == "content_block_start":
            block = chunk.get("content_block") or {}
            if block.get("type") == "tool_use":
                return block.get("name") or ""
            if block.get("type") == "text":
                return block.get("text") or ""
        elif kind == "content_block_delta":
            delta = chunk.get("delta") or {}
            return delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""
        return ""

    def cut(self) -> bytes:
        """Anthropic ends an output cut at max_tokens with stop_reason "max_tokens" (in our message_delta)."""
        self.stop_reason, self.stop_sequence = "max_tokens", None
        return b""

    def frame(self, chunk: dict[str, Any]) -> bytes | None:
        kind = chunk.get("type")
        if kind == "message_start":
            message = dict(chunk.get("message") or {})
            usage = message.get("usage")
            if isinstance(usage, dict):
                self.usage.update({k: v for k, v in usage.items() if v is not None})
            message["id"] = self.call.public_id
            message["model"] = self.call.model.id
            chunk = {**chunk, "message": message}
        elif kind in ("content_block_start", "content_block_delta"):
            text = self.text(chunk)
            if text:
                self.pieces.append(text)
        elif kind == "message_delta":
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                self.usage.update({k: v for k, v in usage.items() if v is not None})
                self.delta_reported = usage.get("output_tokens") is not None
            delta = chunk.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            return None  # ours, with the receipt's usage, ends the stream (tail)
        elif kind == "message_stop":
            return None
        return tr.sse(chunk)

    def upstream_usage(self) -> dict[str, Any] | None:
        # message_start alone says output_tokens 0: only a message_delta's count is the whole output
        usage = usage_from_anthropic(self.usage) if self.delta_reported else None
        if usage is None:
            return None
        prompt = usage.prompt_tokens + usage.cached_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": prompt + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        }

    def produced(self) -> str:
        return "".join(self.pieces)

    def tail(self, receipt: Receipt) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": self.stop_sequence},
            "usage": tr.usage_block(receipt),
        }
        return tr.sse(delta) + tr.sse({"type": "message_stop"})

    def error(self, exc: ApiError, request_id: str) -> bytes:
        return ANTHROPIC.stream_error(exc, request_id)

    def stored_body(self, receipt: Receipt) -> bytes:
        return b""  # messages are not stored


class Messages(Operation):
    name = "messages"
    path = "/v1/messages"
    schema: ClassVar[type[BaseModel]] = tr.MessagesRequest
    model_kind = ModelKind.CHAT
    id_prefix = "msg_"
    dialect = ANTHROPIC
    context_param = "messages"
    summary = "Create a message (Anthropic's Messages API; with stream: true, its server-sent events)"
    response_doc = openapi.MessageOut
    streams = True
    estimate_path = "/v1/messages/count_tokens"

    def estimator(self) -> Operation:
        return CountTokens()

    def prepare(self, call: Call) -> None:
        # The chat translation, made once: counted, checked against the model, sent to chat upstreams.
        call.upstream = tr.to_chat(call.request.model_dump(mode="json", by_alias=True, exclude_none=True))

    def needs(self, call: Call) -> Needs:
        return Needs(tools=bool(call.request.tools), vision=tr.has_images(call.payload))

    def count_prompt(self, call: Call) -> int:
        return count_prompt_tokens(call.upstream)

    def output_budget(self, call: Call) -> int:
        model, cap = call.model, call.request.max_tokens
        if cap > model.max_output_tokens:
            raise ApiError(
                400,
                "invalid_request_error",
                f"max_tokens is too large: '{model.id}' produces at most {model.max_output_tokens} tokens.",
                param="max_tokens",
            )
        return cap

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        return call.upstream

    def cap_output(self, call: Call, tokens: int) -> None:
        call.upstream["max_tokens"] = tokens
        call.payload["max_tokens"] = tokens  # what a route speaking Messages itself is sent

    def wants_stream(self, call: Call) -> bool:
        return bool(call.request.stream)

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        native, _ = _native(provider, call)
        if native is not None:
            body, usage = await native(call.payload, upstream_model=route.upstream_model, beta=_beta(call))
        else:
            result = await provider.chat(call.upstream, upstream_model=route.upstream_model)
            body, usage = tr.message_from_chat(result.body), result.usage
        if usage is None:  # upstream's usage was not believable: what we count
            usage = UpstreamUsage(call.prompt_tokens, count_tokens(tr.produced_text(body)))
        return Result(body, usage)

    def open_provider_stream(self, provider: Provider, route: RouteEntry, call: Call) -> AsyncIterator[dict]:
        _, native = _native(provider, call)
        if native is not None:
            return native(call.payload, upstream_model=route.upstream_model, beta=_beta(call))
        chunks = provider.stream_chat(call.upstream, upstream_model=route.upstream_model)
        return tr.events_from_chat(chunks, model=call.model.id, input_tokens=call.prompt_tokens)

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        body = result.body
        out = {
            "id": call.public_id,
            "type": "message",
            "role": "assistant",
            "model": call.model.id,
            "content": body.get("content") or [],
            "stop_reason": body.get("stop_reason"),
            "stop_sequence": body.get("stop_sequence"),
            "usage": tr.usage_block(receipt),
            "routing": render.routing_block(receipt),
        }
        for key in ("container",):  # Anthropic's extras worth keeping on a native answer
            if body.get(key) is not None:
                out[key] = body[key]
        return orjson.dumps(out)

    def stream_view(self, call: Call) -> StreamView:
        return MessageStream(call)


class CountTokens(Messages):
    """POST /v1/messages/count_tokens: the prompt as this gateway counts (and holds for) it; no call, no charge."""

    name = "messages.count_tokens"
    schema = tr.CountTokensRequest
    summary = "Count the input tokens of a Messages request (no call, no charge)"
    estimate_doc = openapi.TokenCountOut

    def output_budget(self, call: Call) -> int:
        return 0

    def wants_stream(self, call: Call) -> bool:
        return False

    def estimate_body(self, call: Call) -> bytes:
        return orjson.dumps({"input_tokens": call.prompt_tokens})


def _beta(call: Call) -> str | None:
    return call.headers.get("anthropic-beta") or None
