"""Billing's domain errors. Billing never speaks HTTP: the gateway maps these to statuses at its edge
(gateway/errors.py), the dashboard and the admin show their messages."""

from __future__ import annotations

from billing.money import usd


class BillingError(Exception):
    """A money rule said no. `code` is stable (API error codes, tests); `message` is for people."""

    code = "billing_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InsufficientBalance(BillingError):
    code = "insufficient_balance"

    def __init__(self, amount_nusd: int) -> None:
        super().__init__(
            self.code,
            f"Your team's available credit does not cover this request (it needs up to {usd(amount_nusd)}). "
            "Top up to continue.",
        )
        self.amount_nusd = amount_nusd


class SpendCapExceeded(BillingError):
    code = "spend_cap_exceeded"

    def __init__(self, *, limit: str, cap_nusd: int, used_nusd: int) -> None:
        what = {"key": "This API key's monthly spend cap", "project": "The monthly budget of this key's project"}.get(
            limit, f"The {limit}'s spend cap"
        )
        super().__init__(
            self.code, f"{what} of {usd(cap_nusd)} would be exceeded ({usd(used_nusd)} used or reserved this month)."
        )
        self.limit = limit
        self.cap_nusd = cap_nusd
        self.used_nusd = used_nusd


class BillingUnavailable(BillingError):
    """The database could not be reached (or no connection freed up in time): nothing was reserved."""

    code = "billing_unavailable"

    def __init__(self) -> None:
        super().__init__(
            self.code,
            "Billing is briefly unavailable, so the request was not sent upstream and nothing was charged. "
            "Retry in a moment.",
        )


class HoldClosed(BillingError):
    """A hold was settled or released already: it cannot end twice."""

    code = "hold_closed"
