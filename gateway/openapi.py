"""Response shapes of the /v1 inference endpoints, for the OpenAPI document only.

The views write their bodies themselves (gateway.render: exact money, upstream's extra fields kept), so
these models are never used to serialise; they say what a client receives.
"""

from __future__ import annotations

from typing import Any

from ninja import Field, Schema

from config.openapi import UsdAmount


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
    input_cost_usd: UsdAmount = Field(description="Exact, from the receipt.")
    output_cost_usd: UsdAmount
    total_cost_usd: UsdAmount
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
    input_cost_usd: UsdAmount
    max_output_cost_usd: UsdAmount
    max_total_cost_usd: UsdAmount
    hold_usd: UsdAmount = Field(description="What the request would reserve from the wallet (0 for test keys).")
    is_test: bool


class ImageDatum(Schema):
    url: str | None = Field(None, description="A Tollgate link, readable without a key until it expires.")
    b64_json: str | None = Field(None, description="The image itself (response_format=b64_json).")
    revised_prompt: str | None = None


class ImageUsageOut(Schema):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    images: int
    unit_price_usd: UsdAmount
    input_cost_usd: UsdAmount
    output_cost_usd: UsdAmount
    total_cost_usd: UsdAmount
    latency_ms: int
    receipt_id: str


class ImagesOut(Schema):
    created: int
    data: list[ImageDatum]
    usage: ImageUsageOut
    routing: RoutingOut


class ImageEstimateOut(Schema):
    object: str = "estimate"
    model: str
    n: int
    size: str
    quality: str | None
    unit_price_usd: UsdAmount
    max_total_cost_usd: UsdAmount = Field(description="n × unit price.")
    hold_usd: UsdAmount = Field(description="What the request reserves from the wallet (0 for test keys).")
    is_test: bool


class ImageJobError(Schema):
    code: str
    message: str


class ImageJobUsage(Schema):
    images: int
    unit_price_usd: UsdAmount
    total_cost_usd: UsdAmount
    receipt_id: str | None


class ImageJobOut(Schema):
    id: str = Field(description="img_…")
    object: str = "image"
    status: str = Field(
        description="pending | processing | succeeded | failed | cancelled | expired | moderation_rejected"
    )
    model: str
    prompt: str
    size: str
    quality: str | None
    style: str | None
    n: int
    test: bool
    created_at: int
    started_at: int | None
    completed_at: int | None
    expires_at: int | None = Field(description="While pending or processing: when an unstarted job expires.")
    cost: ImageEstimateOut
    receipt_id: str | None
    output_urls: list[str] | None = Field(None, description="succeeded: links readable without a key.")
    outputs_expire_at: int | None = None
    revised_prompts: list[str | None] | None = None
    usage: ImageJobUsage | None = Field(None, description="Once terminal: what was charged.")
    error: ImageJobError | None = Field(None, description="failed, cancelled, expired, moderation_rejected.")


class ImageJobListOut(Schema):
    object: str = "list"
    data: list[ImageJobOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ResponseUsageOut(Schema):
    input_tokens: int
    input_tokens_details: dict[str, int] = Field(description="cached_tokens")
    output_tokens: int
    output_tokens_details: dict[str, int] = Field(description="reasoning_tokens")
    total_tokens: int
    input_cost_usd: UsdAmount = Field(description="Exact, from the receipt.")
    output_cost_usd: UsdAmount
    total_cost_usd: UsdAmount
    latency_ms: int
    ttft_ms: int | None
    receipt_id: str


class ResponseOut(Schema):
    """OpenAI's Response object."""

    id: str = Field(description="resp_…")
    object: str = "response"
    created_at: int
    completed_at: int | None = None
    status: str = Field(description="completed | incomplete | failed")
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[dict[str, Any]] = Field(
        description="`message` items (output_text parts) and `function_call` items (call_id, name, arguments)."
    )
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, Any]
    store: bool
    temperature: float
    text: dict[str, Any]
    tool_choice: Any
    tools: list[dict[str, Any]]
    top_p: float
    truncation: str
    usage: ResponseUsageOut
    user: str | None
    metadata: dict[str, str]
    routing: RoutingOut


class ResponseDeletedOut(Schema):
    id: str
    object: str = "response"
    deleted: bool


class ResponseItemListOut(Schema):
    object: str = "list"
    data: list[dict[str, Any]] = Field(description="The response's input items, each with its id.")
    first_id: str | None
    last_id: str | None
    has_more: bool


class MessageUsageOut(Schema):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    input_cost_usd: UsdAmount = Field(description="Exact, from the receipt.")
    output_cost_usd: UsdAmount
    total_cost_usd: UsdAmount
    latency_ms: int
    ttft_ms: int | None
    receipt_id: str


class MessageOut(Schema):
    """Anthropic's Message object."""

    id: str = Field(description="msg_…")
    type: str = "message"
    role: str = "assistant"
    model: str
    content: list[dict[str, Any]] = Field(description="`text` and `tool_use` blocks.")
    stop_reason: str | None
    stop_sequence: str | None
    usage: MessageUsageOut
    routing: RoutingOut


class TokenCountOut(Schema):
    input_tokens: int


class AnthropicErrorBody(Schema):
    type: str
    message: str


class AnthropicErrorOut(Schema):
    """Anthropic's error envelope (on /v1/messages)."""

    type: str = "error"
    error: AnthropicErrorBody
    request_id: str


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
    reasoning: bool = Field(description="reasoning.effort is passed on (Responses API).")
    multimodal_input: bool = Field(description="Embeddings of text and image parts.")


class ImagePricingOut(Schema):
    currency: str = "USD"
    unit: str = "per_image"
    per_image: str | None = Field(description="The default size's price (no size or quality asked).")
    images: dict[str, str] = Field(description='USD per image by size, or size/quality: {"1024x1024/hd": "0.08"}.')


class ModelOut(Schema):
    id: str
    object: str = "model"
    created: int
    owned_by: str
    type: str = Field(description="chat | embedding | image")
    context_length: int | None = Field(None, description="Chat and embedding models.")
    max_output_tokens: int | None = Field(None, description="Chat and embedding models.")
    sizes: list[str] | None = Field(None, description="Image models: the sizes offered.")
    qualities: list[str] | None = Field(None, description="Image models: the qualities priced separately.")
    pricing: PricingOut | ImagePricingOut
    capabilities: CapabilitiesOut | None = None


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


STREAMS = {
    "chat.completions": "Server-sent events (`data: <chunk JSON>`), ending in `data: [DONE]`.",
    "completions": "Server-sent events (`data: <chunk JSON>`), ending in `data: [DONE]`.",
    "responses": "OpenAI's typed events (`event: response.created` … `response.completed`), each with its "
    "sequence_number.",
    "messages": "Anthropic's events: message_start, content_block_start/delta/stop, message_delta, message_stop, "
    "ping; `error` mid-stream.",
}


def _responses(
    schemas: dict[str, Any], ok: type, *, streamed: str | None, error_doc: type = ErrorOut, status: int = 200
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _component(schemas, ok)}}
    if streamed:
        content["text/event-stream"] = {"schema": {"type": "string", "description": streamed}}
    error = {"content": {"application/json": {"schema": _component(schemas, error_doc)}}}
    out: dict[str, Any] = {str(status): {"description": "Accepted" if status == 202 else "OK", "content": content}}
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


MAX_COST = {
    "name": "Tollgate-Max-Cost",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "example": "0.05"},
    "description": "The most this request may cost, in US dollars (or `max_cost_usd` in the body, which is not "
    "sent upstream; the stricter applies). Max tokens shrink to what it affords, a stream is cut before it passes "
    "it (finish_reason length), the receipt is never above it; 400 max_cost_too_low when not even the prompt fits. "
    "Without it, the key's default cap applies, if any.",
}


def add_operations(document: dict[str, Any], operations) -> dict[str, Any]:
    """Describe every charging operation (and its estimate) in the ninja-generated document."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["KeyAuth"] = {"type": "http", "scheme": "bearer"}
    paths = document.setdefault("paths", {})

    def body(schema: type) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _component(schemas, schema)}}}

    for op in operations:
        error_doc = AnthropicErrorOut if op.dialect.name == "anthropic" else ErrorOut
        base = {"tags": ["inference"], "security": [{"KeyAuth": []}]}
        paths.setdefault(op.path, {})["post"] = {  # the path may have ninja reads too (GET /v1/images)
            **base,
            "parameters": [MAX_COST],
            "requestBody": body(op.schema),
            "operationId": op.name.replace(".", "_"),
            "summary": op.summary,
            "responses": _responses(
                schemas,
                op.response_doc,
                streamed=STREAMS.get(op.name, "Server-sent events.") if op.streams else None,
                error_doc=error_doc,
                status=202 if op.deferred else 200,
            ),
        }
        if op.has_estimate:
            estimator = op.estimator()
            paths[op.estimate_path or op.path + "/estimate"] = {
                "post": {
                    **base,
                    "parameters": [MAX_COST],
                    "requestBody": body(estimator.schema),
                    "operationId": estimator.name.replace(".", "_") + ("" if estimator is not op else "_estimate"),
                    "summary": estimator.summary
                    if estimator is not op
                    else "Estimate the cost and hold of this request (no upstream call, no charge)",
                    "responses": _responses(
                        schemas, getattr(estimator, "estimate_doc", EstimateOut), streamed=None, error_doc=error_doc
                    ),
                }
            }
    return document
