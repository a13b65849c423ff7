"""POST /v1/embeddings: vectors as floats or base64, no output tokens. An input given as a list of content parts
(text and images) is one multimodal input, embedded as one vector by models that declare it; each image part is
billed as the model's `image_input_tokens` prompt tokens."""

from __future__ import annotations

from typing import Any

from billing.models import Receipt
from config.errors import ApiError
from gateway import openapi, render, schemas
from gateway.catalog import Needs, RouteEntry
from gateway.models import ModelKind
from gateway.operations.base import Call, Operation, Result
from gateway.providers.base import Provider, UpstreamUsage
from gateway.tokens import count_prompt_tokens, count_tokens


class Embeddings(Operation):
    name = "embeddings"
    path = "/v1/embeddings"
    schema = schemas.EmbeddingRequest
    model_kind = ModelKind.EMBEDDING
    summary = "Create embeddings (float or base64)"
    response_doc = openapi.EmbeddingsOut

    def needs(self, call: Call) -> Needs:
        return Needs(multimodal_input=call.request.is_multimodal)

    def count_prompt(self, call: Call) -> int:
        if not call.request.is_multimodal:
            return count_prompt_tokens({"input": call.payload.get("input")})
        model = call.model
        if not model.supports_multimodal_input:
            raise ApiError(
                400,
                "invalid_request_error",
                f"The model '{model.id}' embeds text only: 'input' must be a string or a list of strings.",
                param="input",
            )
        parts = call.request.input
        text = sum(count_tokens(part.text) for part in parts if part.type == "text")
        return text + model.image_input_tokens * sum(1 for part in parts if part.type == "image_url")

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        # Always ask for floats: the gateway encodes base64 itself, from the exact floats.
        return {**call.payload, "encoding_format": "float"}

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        result = await provider.embeddings(call.upstream, upstream_model=route.upstream_model)
        if call.request.is_multimodal:  # priced as the model declares, whatever upstream counts for an image
            return Result(result.body, UpstreamUsage(prompt_tokens=call.prompt_tokens, completion_tokens=0))
        return Result(result.body, result.usage)

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        return render.embeddings_body(
            result.body, model=call.model.id, receipt=receipt, encoding=call.request.encoding_format
        )
