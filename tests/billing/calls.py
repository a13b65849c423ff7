"""The settlement interface (billing.settlement) in the keyword shape these tests read best: one call per
step, the hold request spelled out."""

from __future__ import annotations

from billing import pricing, settlement
from billing.models import Receipt
from billing.settlement import Hold, HoldRequest, ReceiptMeta


def _request(
    *,
    team_id: int,
    key_id: int | None,
    request_id: str,
    amount_nusd: int,
    is_test: bool,
    monthly_spend_cap_nusd: int | None = None,
    project_id: int | None = None,
    project_budget_nusd: int | None = None,
) -> HoldRequest:
    return HoldRequest(
        team_id=team_id,
        key_id=key_id,
        request_id=request_id,
        amount_nusd=amount_nusd,
        is_test=is_test,
        spend_cap_nusd=monthly_spend_cap_nusd,
        project_id=project_id,
        project_budget_nusd=project_budget_nusd,
    )


def place_hold(**kwargs) -> Hold:
    return settlement.place_hold_sync(_request(**kwargs))


async def aplace_hold(**kwargs) -> Hold:
    return await settlement.place_hold(_request(**kwargs))


def settle(
    hold: Hold, *, usage: pricing.Usage, prices: pricing.Prices, meta: ReceiptMeta, status: str = "succeeded"
) -> Receipt:
    return settlement.record_sync(settlement.price(hold, usage=usage, prices=prices, meta=meta, status=status))


async def asettle(
    hold: Hold, *, usage: pricing.Usage, prices: pricing.Prices, meta: ReceiptMeta, status: str = "succeeded"
) -> Receipt:
    return await settlement.record(settlement.price(hold, usage=usage, prices=prices, meta=meta, status=status))


def release(hold: Hold, *, meta: ReceiptMeta, error_code: str) -> Receipt:
    return settlement.release_sync(hold, meta=meta, error_code=error_code)


async def arelease(hold: Hold, *, meta: ReceiptMeta, error_code: str) -> Receipt:
    return await settlement.release(hold, meta=meta, error_code=error_code)
