"""The ledger check: every wallet's balance equals the sum of its ledger entries, its held amount equals the
sum of its open holds, and no balance is below zero. `check_ledger`, the tests and the benchmark all call
`find_discrepancies`."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from billing.models import Hold, HoldStatus, LedgerEntry, Wallet


@dataclass(frozen=True, slots=True)
class Discrepancy:
    wallet_id: int
    team_slug: str
    balance_nusd: int
    ledger_sum_nusd: int
    held_nusd: int
    open_holds_nusd: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.balance_nusd != self.ledger_sum_nusd:
            found.append(
                f"balance {self.balance_nusd} != ledger sum {self.ledger_sum_nusd} "
                f"(off by {self.balance_nusd - self.ledger_sum_nusd} nusd)"
            )
        if self.balance_nusd < 0:
            found.append(f"balance {self.balance_nusd} is below zero")
        if self.held_nusd != self.open_holds_nusd:
            found.append(
                f"held {self.held_nusd} != open holds {self.open_holds_nusd} "
                f"(off by {self.held_nusd - self.open_holds_nusd} nusd)"
            )
        return found

    def describe(self) -> str:
        return f"wallet {self.wallet_id} (team {self.team_slug}): " + "; ".join(self.problems)


def _sum_of(queryset, field: str) -> Coalesce:
    total = queryset.values("wallet_id").annotate(s=Sum(field)).values("s")
    return Coalesce(Subquery(total), Value(0, output_field=IntegerField()))


def annotated_wallets():
    """Wallets with `ledger_sum` and `open_holds` computed in the same query (subqueries, no join fan-out)."""
    return Wallet.objects.annotate(
        ledger_sum=_sum_of(LedgerEntry.objects.filter(wallet_id=OuterRef("pk")), "amount_nusd"),
        open_holds=_sum_of(Hold.objects.filter(wallet_id=OuterRef("pk"), status=HoldStatus.OPEN), "amount_nusd"),
    )


def find_discrepancies() -> list[Discrepancy]:
    """Every wallet that does not reconcile; empty when all is well. One query."""
    rows = (
        annotated_wallets()
        .filter(~Q(balance_nusd=F("ledger_sum")) | ~Q(held_nusd=F("open_holds")) | Q(balance_nusd__lt=0))
        .values_list("pk", "team__slug", "balance_nusd", "ledger_sum", "held_nusd", "open_holds")
        .order_by("pk")
    )
    return [Discrepancy(*row) for row in rows]


def wallet_count() -> int:
    return Wallet.objects.count()
