"""POST /v1/embeddings: vectors as floats or base64, no output tokens."""

from __future__ import annotations

from typing import Any

from billing.models import Receipt
from gateway import openapi, render, schemas
from gateway.catalog import RouteEntry
from gateway.models import ModelKind
from gateway.operations.base import Call, Operation, Result
from gateway.providers.base import Provider
from gateway.tokens import count_prompt_tokens


class Embeddings(Operation):
    name = "embeddings"
    path = "/v1/embeddings"
    schema = schemas.EmbeddingRequest
    model_kind = ModelKind.EMBEDDING
    summary = "Create embeddings (float or base64)"
    response_doc = openapi.EmbeddingsOut

    def count_prompt(self, call: Call) -> int:
        return count_prompt_tokens({"input": call.payload.get("input")})

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        # Always ask for floats: the gateway encodes base64 itself, from the exact floats.
        return {**call.payload, "encoding_format": "float"}

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        result = await provider.embeddings(call.upstream, upstream_model=route.upstream_model)
        return Result(result.body, result.usage)

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        return render.embeddings_body(
            result.body, model=call.model.id, receipt=receipt, encoding=call.request.encoding_format
        )
