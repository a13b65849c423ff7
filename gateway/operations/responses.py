"""POST /v1/responses: OpenAI's Responses API, plain and streamed, over every provider (translated onto chat
completions, gateway/translate/responses.py), billed exactly like chat, stored by default (`store`, as OpenAI's)
and continued by `previous_response_id`.

The stored conversation of `previous_response_id` is read before planning (`load`), so another team's id is a
404 before any hold, and its items are sent (and billed) as prompt tokens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from billing.models import Receipt, ReceiptStatus
from config.db import run_db
from config.errors import ApiError
from gateway import openapi, render, stored_responses, teams
from gateway.catalog import Needs, RouteEntry
from gateway.models import ModelKind, StoredResponse
from gateway.operations.base import Call, Operation, Result, StreamView
from gateway.providers.base import Provider
from gateway.tokens import count_prompt_tokens
from gateway.translate import responses as tr


def _event(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _effort(call: Call) -> str | None:
    """reasoning.effort reaches only models that support it; for the others it is dropped (and echoed as null)."""
    return call.request.effort if call.model.supports_reasoning else None


def _skeleton(call: Call) -> dict[str, Any]:
    return tr.skeleton(
        call.request, response_id=call.public_id, model=call.model.id, created_at=call.created, effort=_effort(call)
    )


def _final(call: Call, output: list, finish: str | None, receipt: Receipt, upstream_usage: dict | None) -> dict:
    body = _skeleton(call)
    tr.finished(body, output, finish, completed_at=int(time.time()))
    if receipt.status == ReceiptStatus.PARTIAL and body["status"] == "completed":
        # the client left (or upstream broke) before the end: what was produced is kept, and said to be partial
        body["status"] = "incomplete"
        body["incomplete_details"] = {"reason": "interrupted"}
    body["usage"] = tr.usage_block(receipt, upstream_usage)
    body["routing"] = render.routing_block(receipt)
    return body


class ResponseStream(StreamView):
    """The Responses API's typed events: response.created and .in_progress first, item and part events as the
    output arrives, then response.completed (or .incomplete) with the priced usage; response.failed when upstream
    breaks mid-way."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.events = tr.ResponseEvents()
        self._ending: tuple[bytes, dict[str, Any]] | None = None
        self._sent = 0

    def text(self, chunk: dict[str, Any]) -> str:
        pieces = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # as ResponseEvents: one output
            delta = choice.get("delta") or {}
            pieces.append(delta.get("content") or delta.get("refusal") or "")
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                pieces.append((function.get("name") or "") + (function.get("arguments") or ""))
        return "".join(pieces)

    def cut(self) -> bytes:
        """The response ends incomplete, reason max_output_tokens (response.incomplete), as when they run out."""
        self.events.finish = "length"
        return b""

    def head(self) -> bytes:
        body = _skeleton(self.call)
        created = self.events.event("response.created", response=body)
        in_progress = self.events.event("response.in_progress", response=body)
        return _event(created) + _event(in_progress)

    def frame(self, chunk: dict[str, Any]) -> bytes | None:
        events = self.events.feed(chunk)
        return b"".join(_event(e) for e in events) if events else None

    def upstream_usage(self) -> dict[str, Any] | None:
        return self.events.usage

    def produced(self) -> str:
        return self.events.produced()

    def _ending_for(self, receipt: Receipt) -> tuple[bytes, dict[str, Any]]:
        """The closing events and the final object, made once: the pipeline may ask for the tail twice (for an
        Idempotency-Key's transcript, then to send it) and for the stored body, all from the same receipt."""
        if self._ending is None:
            self._sent = self.events.sequence  # what went out before the ending (see `error`)
            closing = self.events.close()  # a stream cut short keeps its items as they stood
            body = _final(self.call, self.events.output, self.events.finish, receipt, self.events.usage)
            kind = "response.completed" if body["status"] == "completed" else "response.incomplete"
            frames = b"".join(_event(e) for e in closing) + _event(self.events.event(kind, response=body))
            self._ending = (frames, body)
        return self._ending

    def tail(self, receipt: Receipt) -> bytes:
        return self._ending_for(receipt)[0]

    def error(self, exc: ApiError, request_id: str) -> bytes:
        if self._ending is not None:  # the partial settlement made an ending that was stored, never sent
            self.events.sequence = self._sent
        body = _skeleton(self.call)
        body["status"] = "failed"
        body["output"] = self.events.output
        body["error"] = {"code": exc.code, "message": exc.message}
        return _event(self.events.event("response.failed", response=body))

    def stored_body(self, receipt: Receipt) -> bytes:
        return orjson.dumps(self._ending_for(receipt)[1])


class Responses(Operation):
    name = "responses"
    path = "/v1/responses"
    schema = tr.ResponsesRequest
    model_kind = ModelKind.CHAT
    id_prefix = "resp_"
    context_param = "input"
    summary = "Create a model response (OpenAI's Responses API; with stream: true, its typed server-sent events)"
    response_doc = openapi.ResponseOut
    streams = True

    def prepare(self, call: Call) -> None:
        call.request._items = tr.input_items(call.request)

    async def load(self, call: Call) -> None:
        request = call.request
        if request.previous_response_id:
            request._history = await run_db(
                stored_responses.conversation, call.ctx.team_id, request.previous_response_id
            )
        call.upstream = tr.to_chat(request, [*request._history, *request._items])

    def needs(self, call: Call) -> Needs:
        request = call.request
        fmt = request.format
        images = tr.has_images([*request._history, *request._items])
        return Needs(tools=bool(request.tools), vision=images, json=fmt is not None and fmt.type != "text")

    def count_prompt(self, call: Call) -> int:
        return count_prompt_tokens(call.upstream)

    def output_budget(self, call: Call) -> int:
        model = call.model
        cap = call.request.max_output_tokens
        if cap is not None and cap > model.max_output_tokens:
            raise ApiError(
                400,
                "invalid_request_error",
                f"max_output_tokens is too large: '{model.id}' produces at most {model.max_output_tokens} tokens.",
                param="max_output_tokens",
            )
        return cap or model.max_output_tokens

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        chat = call.upstream
        effort = _effort(call)
        if effort is not None:
            chat = {**chat, "reasoning_effort": effort}
            if "max_tokens" in chat:  # reasoning models take max_completion_tokens (reasoning included)
                chat["max_completion_tokens"] = chat.pop("max_tokens")
        return chat

    def wants_stream(self, call: Call) -> bool:
        return bool(call.request.stream)

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        result = await provider.chat(call.upstream, upstream_model=route.upstream_model)
        return Result(result.body, result.usage)

    def open_provider_stream(self, provider: Provider, route: RouteEntry, call: Call) -> AsyncIterator[dict]:
        return provider.stream_chat(call.upstream, upstream_model=route.upstream_model)

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        output, finish = tr.output_from_chat(result.body)
        usage = result.body.get("usage") if isinstance(result.body.get("usage"), dict) else None
        return orjson.dumps(_final(call, output, finish, receipt, usage))

    def stream_view(self, call: Call) -> StreamView:
        return ResponseStream(call)

    async def persists(self, call: Call) -> bool:
        return call.request.store or await teams.stores_completions(call.ctx.team_id)

    def persist(self, call: Call, receipt: Receipt, body: bytes) -> None:
        request = call.request
        StoredResponse.objects.create(
            response_id=call.public_id,
            team_id=call.ctx.team_id,
            request_id=call.request_id,
            receipt_id=receipt.public_id,
            model=call.model.id,
            previous_response_id=request.previous_response_id or "",
            context=orjson.dumps(request._history).decode(),
            input_items=orjson.dumps(request._items).decode(),
            response=body.decode(),
        )
