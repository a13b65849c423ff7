"""Response shapes of the /v1 inference endpoints, for the OpenAPI document only.

The views write their bodies themselves (gateway.render: exact money, upstream's extra fields kept), so
these models are never used to serialise; they say what a client receives.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ninja import Field, Schema


class ErrorBody(Schema):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorOut(Schema):
    """OpenAI's error envelope, with the request id."""

    error: ErrorBody
    request_id: str


class PromptTokensDetails(Schema):
    cached_tokens: int


class UsageOut(Schema):
    prompt_tokens: int
    completion_tokens: int | None = Field(None, description="Absent for embeddings.")
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    input_cost_usd: Decimal = Field(description="Exact, from the receipt.")
    output_cost_usd: Decimal
    total_cost_usd: Decimal
    latency_ms: int
    ttft_ms: int | None
    receipt_id: str


class RoutingOut(Schema):
    routed_to: str = Field(description="The catalog model that answered (differs from `model` for auto).")
    provider: str
    attempts: int


class FunctionOut(Schema):
    name: str
    arguments: str


class ToolCallOut(Schema):
    id: str
    type: str = "function"
    function: FunctionOut


class AssistantMessage(Schema):
    role: str = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChatChoice(Schema):
    index: int
    message: AssistantMessage
    logprobs: Any | None = None
    finish_reason: str | None


class ChatCompletionOut(Schema):
    id: str = Field(description="chatcmpl-…")
    object: str = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: UsageOut
    routing: RoutingOut


class StoredChatCompletionOut(ChatCompletionOut):
    stored: bool = Field(description="False: not stored, `choices` is empty and only the metadata is kept.")
    status: str | None = Field(None, description="The receipt's status, when only metadata is kept.")


class TextChoice(Schema):
    text: str
    index: int
    logprobs: Any | None = None
    finish_reason: str | None


class CompletionOut(Schema):
    id: str = Field(description="cmpl-…")
    object: str = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: UsageOut
    routing: RoutingOut


class Embedding(Schema):
    object: str = "embedding"
    index: int
    embedding: list[float] | str = Field(
        description="Floats, or base64 of little-endian float32 with encoding_format=base64."
    )


class EmbeddingsOut(Schema):
    object: str = "list"
    data: list[Embedding]
    model: str
    usage: UsageOut
    routing: RoutingOut


class EstimateOut(Schema):
    object: str = "estimate"
    model: str
    prompt_tokens: int = Field(description="An upper-bound estimate of the prompt.")
    max_completion_tokens: int
    input_cost_usd: Decimal
    max_output_cost_usd: Decimal
    max_total_cost_usd: Decimal
    hold_usd: Decimal = Field(description="What the request would reserve from the wallet (0 for test keys).")
    is_test: bool


class PricingOut(Schema):
    currency: str = "USD"
    unit: str = "per_million_tokens"
    input: str
    cached_input: str
    output: str


class CapabilitiesOut(Schema):
    tools: bool
    vision: bool
    json_: bool = Field(alias="json")


class ModelOut(Schema):
    id: str
    object: str = "model"
    created: int
    owned_by: str
    type: str = Field(description="chat | embedding")
    context_length: int
    max_output_tokens: int
    pricing: PricingOut
    capabilities: CapabilitiesOut


class ModelListOut(Schema):
    object: str = "list"
    data: list[ModelOut]


class ProviderRouteOut(Schema):
    id: str = Field(description="The provider.")
    type: str = Field(description="primary | backup")
    enabled: bool = Field(description="Enabled and its circuit breaker closed.")
    upstream_model: str


class ProviderListOut(Schema):
    object: str = "list"
    model: str
    data: list[ProviderRouteOut]


ERRORS: dict[int, type[Schema]] = {code: ErrorOut for code in (400, 401, 403, 404, 429)}
INFERENCE_ERRORS: dict[int, type[Schema]] = {**ERRORS, **{code: ErrorOut for code in (402, 409, 422, 502, 503, 504)}}


# --- the charging operations (served by gateway/transport.py, not by ninja) -----------------------------

REF = "#/components/schemas/{model}"


def _component(schemas: dict[str, Any], model: type) -> dict[str, str]:
    """Put a pydantic model (and the models it uses) into components.schemas; a $ref to it."""
    spec = model.model_json_schema(ref_template=REF, by_alias=True)  # type: ignore[attr-defined]
    schemas.update(spec.pop("$defs", {}))
    schemas[model.__name__] = spec
    return {"$ref": REF.format(model=model.__name__)}


def _responses(schemas: dict[str, Any], ok: type, *, streamed: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _component(schemas, ok)}}
    if streamed:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "Server-sent events (`data: <chunk JSON>`), ending in `data: [DONE]`.",
            }
        }
    error = {"content": {"application/json": {"schema": _component(schemas, ErrorOut)}}}
    out: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    for status in sorted(INFERENCE_ERRORS | {413: ErrorOut}):
        out[str(status)] = {"description": HTTP_REASONS.get(status, "Error"), **error}
    return out


HTTP_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def add_operations(document: dict[str, Any], operations) -> dict[str, Any]:
    """Describe every charging operation (and its estimate) in the ninja-generated document."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["KeyAuth"] = {"type": "http", "scheme": "bearer"}
    paths = document.setdefault("paths", {})
    for op in operations:
        request_body = {"required": True, "content": {"application/json": {"schema": _component(schemas, op.schema)}}}
        base = {"tags": ["inference"], "security": [{"KeyAuth": []}], "requestBody": request_body}
        paths[op.path] = {
            "post": {
                **base,
                "operationId": op.name.replace(".", "_"),
                "summary": op.summary,
                "responses": _responses(schemas, op.response_doc, streamed=op.streams),
            }
        }
        if op.has_estimate:
            paths[op.path + "/estimate"] = {
                "post": {
                    **base,
                    "operationId": op.name.replace(".", "_") + "_estimate",
                    "summary": "Estimate the cost and hold of this request (no upstream call, no charge)",
                    "responses": _responses(schemas, EstimateOut, streamed=False),
                }
            }
    return document
