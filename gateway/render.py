"""Response bodies: the usage block with exact costs, the routing block, OpenAI's object shapes.

Costs are JSON numbers written digit for digit from integer nano-dollars (orjson.Fragment), never via
a float, and always taken from the receipt, so the response and the receipt agree.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from billing.models import Receipt
from billing.money import json_number


def usage_block(receipt: Receipt, *, embeddings: bool = False, upstream: dict | None = None) -> dict[str, Any]:
    prompt = receipt.prompt_tokens + receipt.cached_tokens
    usage: dict[str, Any] = {}
    if upstream:  # keep what upstream adds (completion_tokens_details …); ours override the rest
        usage.update({k: v for k, v in upstream.items() if k.endswith("_details")})
    usage["prompt_tokens"] = prompt
    if not embeddings:
        usage["completion_tokens"] = receipt.completion_tokens
    usage["total_tokens"] = prompt + receipt.completion_tokens
    details = dict(usage.get("prompt_tokens_details") or {})
    details["cached_tokens"] = receipt.cached_tokens
    usage["prompt_tokens_details"] = details
    usage["input_cost_usd"] = json_number(receipt.input_cost_nusd)
    usage["output_cost_usd"] = json_number(receipt.output_cost_nusd)
    usage["total_cost_usd"] = json_number(receipt.total_cost_nusd)
    usage["latency_ms"] = receipt.latency_ms
    usage["ttft_ms"] = receipt.ttft_ms
    usage["receipt_id"] = receipt.public_id
    return usage


def routing_block(receipt: Receipt) -> dict[str, Any]:
    return {"routed_to": receipt.model_routed, "provider": receipt.provider, "attempts": receipt.attempts}


def completion_body(upstream: dict[str, Any], *, completion_id: str, model: str, receipt: Receipt) -> bytes:
    body = dict(upstream)
    body["id"] = completion_id
    body["model"] = model
    body["usage"] = usage_block(
        receipt, upstream=upstream.get("usage") if isinstance(upstream.get("usage"), dict) else None
    )
    body["routing"] = routing_block(receipt)
    return orjson.dumps(body)


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_body(upstream: dict[str, Any], *, model: str, receipt: Receipt, encoding: str) -> bytes:
    data = []
    for item in upstream.get("data") or ():
        vector = item.get("embedding")
        if encoding == "base64" and isinstance(vector, list):
            item = {**item, "embedding": _b64(vector)}
        data.append(item)
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": usage_block(receipt, embeddings=True),
        "routing": routing_block(receipt),
    }
    return orjson.dumps(body)


def usage_chunk(*, completion_id: str, created: int, model: str, object_name: str, receipt: Receipt) -> bytes:
    """The final streamed chunk (stream_options.include_usage): no choices, the usage and routing blocks."""
    return orjson.dumps(
        {
            "id": completion_id,
            "object": object_name,
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage_block(receipt),
            "routing": routing_block(receipt),
        }
    )


def metadata_body(receipt: Receipt, completion_id: str) -> bytes:
    """GET /v1/chat/completions/{id} for a completion that was not stored: what the receipt knows."""
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "stored": False,
            "created": int(receipt.created_at.timestamp()),
            "model": receipt.model_routed or receipt.model_requested,
            "status": receipt.status,
            "choices": [],
            "usage": usage_block(receipt),
            "routing": routing_block(receipt),
        }
    )
