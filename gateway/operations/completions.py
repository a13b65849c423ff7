"""POST /v1/completions: the legacy text completions, plain and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from billing.models import Receipt
from gateway import openapi, render, schemas
from gateway.catalog import RouteEntry
from gateway.models import ModelKind
from gateway.operations.base import Call, Operation, Result, StreamView
from gateway.operations.chat import ChunkStream, output_budget
from gateway.providers.base import Provider
from gateway.tokens import count_prompt_tokens


class Completions(Operation):
    name = "completions"
    path = "/v1/completions"
    schema = schemas.CompletionRequest
    model_kind = ModelKind.CHAT
    id_prefix = "cmpl-"
    context_param = "prompt"
    has_estimate = False
    summary = "Create a (legacy) text completion"
    response_doc = openapi.CompletionOut
    streams = True

    def count_prompt(self, call: Call) -> int:
        return count_prompt_tokens(call.payload)

    def output_budget(self, call: Call) -> int:
        return output_budget(call, cap=call.request.output_cap, n=call.request.n)

    def choices(self, call: Call) -> int:
        return call.request.n or 1

    def wants_stream(self, call: Call) -> bool:
        return bool(call.request.stream)

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        result = await provider.completion(call.upstream, upstream_model=route.upstream_model)
        return Result(result.body, result.usage)

    def open_provider_stream(self, provider: Provider, route: RouteEntry, call: Call) -> AsyncIterator[dict[str, Any]]:
        return provider.stream_completion(call.upstream, upstream_model=route.upstream_model)

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        return render.completion_body(result.body, completion_id=call.public_id, model=call.model.id, receipt=receipt)

    def stream_view(self, call: Call) -> StreamView:
        return ChunkStream(call, object_name="text_completion")
