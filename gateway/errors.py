"""Domain errors become HTTP errors here, at the gateway's edge (billing and the providers never speak HTTP)."""

from __future__ import annotations

from billing.errors import BillingError, BillingUnavailable, InsufficientBalance, SpendCapExceeded
from config import metrics
from config.errors import ApiError


def from_billing(exc: BillingError) -> ApiError:
    if isinstance(exc, InsufficientBalance | SpendCapExceeded):
        metrics.insufficient_balance.labels(exc.code).inc()
    if isinstance(exc, SpendCapExceeded):  # which limit refused it: the key's monthly cap or its project's budget
        return ApiError(402, exc.code, exc.message, kind="insufficient_balance", extra={"limit": exc.limit})
    if isinstance(exc, InsufficientBalance):
        return ApiError(402, exc.code, exc.message, kind="insufficient_balance")
    if isinstance(exc, BillingUnavailable):
        return unavailable()
    return ApiError(500, "internal_error", "The server had an error while processing your request.")


def unavailable(retry_after: int = 1) -> ApiError:
    """The database or Redis cannot be reached: nothing was sent upstream, nothing was charged."""
    return ApiError(
        503,
        "billing_unavailable",
        "Billing is briefly unavailable, so the request was not sent "
        "upstream and nothing was charged. Retry in a moment.",
        headers={"Retry-After": str(retry_after)},
    )
