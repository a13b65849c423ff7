"""POST /v1/chat/completions: OpenAI's chat completions, plain and streamed, with stored completions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from billing.models import Receipt
from config.errors import ApiError
from gateway import openapi, render, schemas, sse, teams
from gateway.catalog import Needs, RouteEntry
from gateway.dialects import OPENAI
from gateway.models import ModelKind, StoredCompletion
from gateway.operations.base import Call, Operation, Result, StreamView, chunk_text
from gateway.providers.base import Provider
from gateway.tokens import count_prompt_tokens

# Fields the gateway acts on itself and does not forward upstream.
GATEWAY_ONLY = ("store", "metadata", "attachments")


def has_images(payload: dict[str, Any]) -> bool:
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            return True
    return False


def output_budget(call: Call, *, cap: int | None, n: int | None) -> int:
    """`max_tokens` (or the model's own cap) times `n`; 400 when the request asks for more than the model makes."""
    model = call.model
    if cap is not None and cap > model.max_output_tokens:
        param = "max_completion_tokens" if getattr(call.request, "max_completion_tokens", None) else "max_tokens"
        raise ApiError(
            400,
            "invalid_request_error",
            f"{param} is too large: '{model.id}' produces at most {model.max_output_tokens} tokens.",
            param=param,
        )
    return (cap or model.max_output_tokens) * (n or 1)


class ChunkStream(StreamView):
    """OpenAI's SSE framing of chat.completion.chunk (or text_completion) objects, our id and model on each,
    the usage chunk on request, then `[DONE]`."""

    def __init__(self, call: Call, *, object_name: str) -> None:
        self.call = call
        self.object_name = object_name
        self.include_usage = bool(call.request.stream_options and call.request.stream_options.include_usage)
        self.usage: dict[str, Any] | None = None
        self.pieces: list[str] = []
        self.created = int(time.time())
        # Chat chunks as relayed, kept (a list append each) so a stored completion can be assembled at
        # settlement: whether the team stores is only known then.
        self.chunks: list[dict[str, Any]] = []
        self.indices: set[int] = set()  # the choices seen

    def cut(self) -> bytes:
        """A closing chunk per choice with finish_reason "length", as when max_tokens runs out."""
        chat = self.object_name == "chat.completion.chunk"
        choices: list[dict[str, Any]] = [
            {"index": i, "delta": {}, "logprobs": None, "finish_reason": "length"}
            if chat
            else {"index": i, "text": "", "logprobs": None, "finish_reason": "length"}
            for i in sorted(self.indices or {0})
        ]
        chunk = {
            "id": self.call.public_id,
            "object": self.object_name,
            "created": self.created,
            "model": self.call.model.id,
            "choices": choices,
        }
        self.chunks.append(chunk)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def frame(self, chunk: dict[str, Any]) -> bytes | None:
        usage = chunk.pop("usage", None)
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return None
        text = chunk_text(chunk)
        if text:
            self.pieces.append(text)
        for choice in choices:
            self.indices.add(choice.get("index", 0))
        chunk["id"] = self.call.public_id
        chunk["model"] = self.call.model.id
        self.created = chunk.get("created") or self.created
        self.chunks.append(chunk)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def upstream_usage(self) -> dict[str, Any] | None:
        return self.usage

    def produced(self) -> str:
        return "".join(self.pieces)

    def tail(self, receipt: Receipt) -> bytes:
        if not self.include_usage:
            return sse.DONE
        usage = render.usage_chunk(
            completion_id=self.call.public_id,
            created=self.created,
            model=self.call.model.id,
            object_name=self.object_name,
            receipt=receipt,
        )
        return sse.frame(usage) + sse.DONE

    def error(self, exc: ApiError, request_id: str) -> bytes:
        return OPENAI.stream_error(exc, request_id)

    def stored_body(self, receipt: Receipt) -> bytes:
        return render.completion_body(
            assemble_chat(self.chunks, created=self.created),
            completion_id=self.call.public_id,
            model=self.call.model.id,
            receipt=receipt,
        )


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
            for tool_call in delta.get("tool_calls") or ():
                slot = choice["calls"].setdefault(
                    tool_call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = tool_call.get("id") or slot["id"]
                slot["type"] = tool_call.get("type") or slot["type"]
                function = tool_call.get("function") or {}
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


class ChatCompletions(Operation):
    name = "chat.completions"
    path = "/v1/chat/completions"
    schema = schemas.ChatCompletionRequest
    model_kind = ModelKind.CHAT
    id_prefix = "chatcmpl-"
    context_param = "messages"
    summary = "Create a chat completion (with stream: true, server-sent chat.completion.chunk events)"
    response_doc = openapi.ChatCompletionOut
    streams = True

    def prepare(self, call: Call) -> None:
        call.payload = schemas.apply_attachments(call.payload, call.request)

    def needs(self, call: Call) -> Needs:
        request = call.request
        fmt = request.response_format.type if request.response_format else "text"
        return Needs(tools=bool(request.tools), vision=has_images(call.payload), json=fmt != "text")

    def count_prompt(self, call: Call) -> int:
        return count_prompt_tokens(call.payload)

    def output_budget(self, call: Call) -> int:
        return output_budget(call, cap=call.request.output_cap, n=call.request.n)

    def choices(self, call: Call) -> int:
        return call.request.n or 1

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        return {k: v for k, v in call.payload.items() if k not in GATEWAY_ONLY}

    def wants_stream(self, call: Call) -> bool:
        return bool(call.request.stream)

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        result = await provider.chat(call.upstream, upstream_model=route.upstream_model)
        return Result(result.body, result.usage)

    def open_provider_stream(self, provider: Provider, route: RouteEntry, call: Call) -> AsyncIterator[dict]:
        return provider.stream_chat(call.upstream, upstream_model=route.upstream_model)

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        return render.completion_body(result.body, completion_id=call.public_id, model=call.model.id, receipt=receipt)

    def stream_view(self, call: Call) -> StreamView:
        return ChunkStream(call, object_name="chat.completion.chunk")

    async def persists(self, call: Call) -> bool:
        return bool(call.request.store) or await teams.stores_completions(call.ctx.team_id)

    def persist(self, call: Call, receipt: Receipt, body: bytes) -> None:
        # JSON text, not jsonb: PostgreSQL's jsonb refuses "\u0000", which a prompt may well contain.
        StoredCompletion.objects.create(
            completion_id=call.public_id,
            team_id=call.ctx.team_id,
            request_id=call.request_id,
            receipt_id=receipt.public_id,
            model=call.model.id,
            request=orjson.dumps(call.upstream).decode(),
            response=body.decode(),
            metadata=orjson.dumps(call.request.metadata or {}).decode(),
        )
