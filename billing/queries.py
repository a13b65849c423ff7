"""Read side of billing for the /v1 API and the dashboard: balances and receipt pages, always team-scoped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from billing.models import Receipt, Wallet


@dataclass(frozen=True, slots=True)
class BalanceView:
    balance_nusd: int
    held_nusd: int

    @property
    def available_nusd(self) -> int:
        return self.balance_nusd - self.held_nusd


@dataclass(frozen=True, slots=True)
class ReceiptPage:
    receipts: list[Receipt]
    has_more: bool


def balance_of(team_id: int) -> BalanceView:
    row = Wallet.objects.filter(team_id=team_id).values_list("balance_nusd", "held_nusd").first()
    return BalanceView(*(row or (0, 0)))


def receipts_for_team(team_id: int):
    return Receipt.objects.filter(team_id=team_id).select_related("api_key")


def receipt_for_team(team_id: int, public_id: str) -> Receipt | None:
    """The one door to a receipt: missing and another team's look the same (None)."""
    return receipts_for_team(team_id).filter(public_id=public_id).first()


def receipt_page(
    team_id: int,
    *,
    limit: int,
    after: Receipt | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    key_id: int | None = None,
) -> ReceiptPage:
    """Newest first. `after` is the last receipt of the previous page; `until` is exclusive."""
    qs = receipts_for_team(team_id).order_by("-created_at", "-id")
    if after is not None:
        qs = qs.filter(Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, id__lt=after.id))
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    if key_id is not None:
        qs = qs.filter(api_key_id=key_id)
    rows = list(qs[: limit + 1])
    return ReceiptPage(receipts=rows[:limit], has_more=len(rows) > limit)
