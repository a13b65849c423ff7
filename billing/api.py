"""/v1 billing endpoints (scope billing:read): balance and receipts. Money is written as exact JSON numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema

from accounts.api import KeyAuth
from accounts.auth import KeyContext, key_headers
from accounts.models import ApiKey
from billing import queries
from billing.models import Receipt
from billing.money import json_number, per_million
from billing.settlement import unsettled
from config.errors import ApiError
from config.openapi import UsdAmount

router = Router(tags=["billing"])
SCOPE = "billing:read"
BILLING_READ = KeyAuth(SCOPE)


# --- OpenAPI shapes (documentation; bodies are written with billing.money.json_number, never through a float) --


class BalanceOut(Schema):
    credits: UsdAmount = Field(description="Balance in USD.")
    held_credits: UsdAmount = Field(description="Reserved by requests in flight, USD.")
    available_credits: UsdAmount = Field(description="credits - held_credits, USD.")
    currency: str = "usd"


class ReceiptUsageOut(Schema):
    prompt_tokens: int = Field(description="Uncached prompt tokens.")
    cached_tokens: int
    completion_tokens: int
    total_tokens: int


class PricesOut(Schema):
    input: UsdAmount
    cached: UsdAmount
    output: UsdAmount


class ReceiptOut(Schema):
    id: str
    object: str = "receipt"
    created: int
    created_at: str
    request_id: str
    status: str = Field(description="succeeded | partial | failed")
    error_code: str | None
    test: bool
    mode: str
    key_id: str | None
    key_label: str
    endpoint: str
    model: str
    model_routed: str
    provider: str
    upstream_model: str
    attempts: int
    streamed: bool
    latency_ms: int
    ttft_ms: int | None
    idempotency_key: str | None
    usage: ReceiptUsageOut
    prices_usd_per_million_tokens: PricesOut
    input_cost_usd: UsdAmount
    output_cost_usd: UsdAmount
    total_cost_usd: UsdAmount
    hold_usd: UsdAmount
    max_cost_usd: UsdAmount | None = Field(description="The request's cost cap, if it had one.")
    price_version: str | None = Field(description="The price version (pv_…) the request was priced at.")


class ReceiptListOut(Schema):
    object: str = "list"
    data: list[ReceiptOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


# --- parsing ------------------------------------------------------------------------------------


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param)


def _moment(param: str, raw: str | None, *, end: bool) -> datetime | None:
    """An ISO date (a whole UTC day: its start for `since`, the next day's start for `until`) or datetime."""
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(
            param,
            f"Invalid value for '{param}': expected an ISO date (2025-01-31) or datetime "
            f"(2025-01-31T12:00:00Z), got {raw[:40]!r}.",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _usd(amount_nusd: int):
    return json_number(amount_nusd)


def _json(value: dict, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(orjson.dumps(value), content_type="application/json")
    for name, header in headers.items():
        response[name] = header
    return response


def receipt_json(receipt: Receipt) -> dict:
    return {
        "id": receipt.public_id,
        "object": "receipt",
        "created": int(receipt.created_at.timestamp()),
        "created_at": receipt.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "request_id": receipt.request_id,
        "status": receipt.status,
        "error_code": receipt.error_code or None,
        "test": receipt.is_test,
        "mode": receipt.mode,
        "key_id": receipt.api_key.public_id if receipt.api_key is not None else None,
        "key_label": receipt.key_label,
        "endpoint": receipt.endpoint,
        "model": receipt.model_requested,
        "model_routed": receipt.model_routed,
        "provider": receipt.provider,
        "upstream_model": receipt.upstream_model,
        "attempts": receipt.attempts,
        "streamed": receipt.streamed,
        "latency_ms": receipt.latency_ms,
        "ttft_ms": receipt.ttft_ms,
        "idempotency_key": receipt.idempotency_key or None,
        "usage": {
            "prompt_tokens": receipt.prompt_tokens,
            "cached_tokens": receipt.cached_tokens,
            "completion_tokens": receipt.completion_tokens,
            "total_tokens": receipt.total_tokens,
        },
        "prices_usd_per_million_tokens": {
            "input": _usd(per_million(receipt.input_price_nusd)),
            "cached": _usd(per_million(receipt.cached_price_nusd)),
            "output": _usd(per_million(receipt.output_price_nusd)),
        },
        "input_cost_usd": _usd(receipt.input_cost_nusd),
        "output_cost_usd": _usd(receipt.output_cost_nusd),
        "total_cost_usd": _usd(receipt.total_cost_nusd),
        "hold_usd": _usd(receipt.hold_amount_nusd),
        "max_cost_usd": None if receipt.max_cost_nusd is None else _usd(receipt.max_cost_nusd),
        "price_version": receipt.price_version or None,
    }


# --- endpoints ----------------------------------------------------------------------------------


@router.get("/balance", auth=BILLING_READ, response=BalanceOut, summary="Team balance")
def balance(request: HttpRequest) -> HttpResponse:
    ctx: KeyContext = request.auth  # type: ignore[attr-defined]
    unsettled.wait(ctx.team_id)  # this process's replies whose settlement is still being written
    view = queries.balance_of(ctx.team_id)
    return _json(
        {
            "credits": _usd(view.balance_nusd),
            "held_credits": _usd(view.held_nusd),
            "available_credits": _usd(view.available_nusd),
            "currency": "usd",
        },
        headers=key_headers(ctx),
    )


@router.get("/receipts", auth=BILLING_READ, response=ReceiptListOut, summary="List receipts, newest first")
def list_receipts(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=100, description="Page size, 1 to 100."),
    after: str | None = Query(
        None, description="A receipt id: return the receipts older than it (the previous page's last_id)."
    ),
    since: str | None = Query(None, description="ISO date or datetime: receipts created at or after it."),
    until: str | None = Query(
        None, description="ISO date (that whole day included) or datetime: receipts created before it."
    ),
    key: str | None = Query(None, description="An API key id (key_…) of this team."),
) -> HttpResponse:
    since_at = _moment("since", since, end=False)
    until_at = _moment("until", until, end=True)
    if since_at and until_at and since_at >= until_at:
        raise _bad("until", "'until' must be later than 'since'.")
    if after is not None and not after.startswith("rcpt_"):
        raise _bad("after", "Invalid value for 'after': expected a receipt id (rcpt_…).")
    if key is not None and not key.startswith("key_"):
        raise _bad("key", "Invalid value for 'key': expected an API key id (key_…).")

    ctx: KeyContext = request.auth  # type: ignore[attr-defined]
    unsettled.wait(ctx.team_id)
    cursor = None
    if after is not None:
        cursor = queries.receipt_for_team(ctx.team_id, after)
        if cursor is None:
            raise _bad("after", f"No receipt '{after[:60]}' in this team.")
    key_id = None
    if key is not None:
        key_id = ApiKey.objects.filter(team_id=ctx.team_id, public_id=key).values_list("pk", flat=True).first()
        if key_id is None:
            raise _bad("key", f"No API key '{key[:60]}' in this team.")

    page = queries.receipt_page(ctx.team_id, limit=limit, after=cursor, since=since_at, until=until_at, key_id=key_id)
    data = [receipt_json(r) for r in page.receipts]
    return _json(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        },
        headers=key_headers(ctx),
    )


@router.get("/receipts/{receipt_id}", auth=BILLING_READ, response=ReceiptOut, summary="One receipt")
def get_receipt(request: HttpRequest, receipt_id: str) -> HttpResponse:
    ctx: KeyContext = request.auth  # type: ignore[attr-defined]
    unsettled.wait(ctx.team_id)
    receipt = queries.receipt_for_team(ctx.team_id, receipt_id) if receipt_id.startswith("rcpt_") else None
    if receipt is None:
        raise ApiError(404, "not_found", f"No receipt '{receipt_id[:60]}'.", param="receipt_id")
    return _json(receipt_json(receipt), headers=key_headers(ctx))
