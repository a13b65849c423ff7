"""The portable settlement backend: the hold, the settlement and the release as short ORM transactions.

It serves SQLite (the embedded default) and, on PostgreSQL, the cases the one-statement SQL leaves to it:
holds under a key's monthly cap or a project's budget, whose monthly spend counters move in the same transaction
as the wallet (billing.spend explains why that cannot be raced), and settlements of a hold the sweeper already
released. Every function is synchronous and joins the caller's transaction when there is one.

Concurrency safety comes from conditional UPDATEs (`… WHERE balance - held >= x`, `… WHERE status = 'open'`),
never from long-lived row locks: nothing stays locked while upstream works.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Subquery
from django.utils import timezone

from billing import spend
from billing.errors import BillingUnavailable, HoldClosed, InsufficientBalance
from billing.models import Hold, HoldStatus, LedgerEntry, LedgerKind, Receipt, Wallet
from billing.settlement import Hold as HoldRef
from billing.settlement import HoldRequest, Settlement, announce, hold_expiry
from config.db import run_db

log = logging.getLogger(__name__)


def place_hold(request: HoldRequest, *, lease_id: int | None, public_id: str) -> HoldRef:
    """One short transaction: the conditional UPDATE of the wallet (which both checks and reserves, so two
    processes can never spend the same credit), then, under a key's cap or a project's budget, the conditional
    UPDATE of each monthly counter (billing.spend), then the Hold INSERT. Any refusal rolls all of it back."""
    now = timezone.now()
    with transaction.atomic():
        reserved = Wallet.objects.filter(
            team_id=request.team_id, balance_nusd__gte=F("held_nusd") + request.amount_nusd
        ).update(held_nusd=F("held_nusd") + request.amount_nusd, updated_at=now)
        if not reserved:
            raise InsufficientBalance(request.amount_nusd)
        counters: dict[str, int | None] = {"key_counter_id": None, "project_counter_id": None}
        if request.counted:
            month = spend.month_of(now)
            if request.spend_cap_nusd is not None and request.key_id is not None:
                counters["key_counter_id"] = spend.reserve(
                    "key",
                    request.key_id,
                    amount_nusd=request.amount_nusd,
                    limit_nusd=request.spend_cap_nusd,
                    month=month,
                )
            if request.project_budget_nusd is not None and request.project_id is not None:
                counters["project_counter_id"] = spend.reserve(
                    "project",
                    request.project_id,
                    amount_nusd=request.amount_nusd,
                    limit_nusd=request.project_budget_nusd,
                    month=month,
                )
        hold = Hold.objects.create(
            public_id=public_id,
            # Resolved inside the INSERT, so placing a hold needs no separate wallet lookup.
            wallet_id=Subquery(Wallet.objects.filter(team_id=request.team_id).values("pk")[:1]),
            api_key_id=request.key_id,
            request_id=request.request_id,
            amount_nusd=request.amount_nusd,
            lease_id=lease_id,
            created_at=now,
            expires_at=None if lease_id is not None else hold_expiry(now),
            **counters,
        )
    return HoldRef.live(request, hold_id=hold.pk, public_id=public_id)


def _close_hold(hold: HoldRef, status: str, now: datetime) -> bool:
    """Mark an open hold closed. False when the sweeper released it already (the held amount went back then)."""
    if Hold.objects.filter(pk=hold.row_id, status=HoldStatus.OPEN).update(status=status, closed_at=now):
        return True
    state = Hold.objects.filter(pk=hold.row_id).values_list("status", flat=True).first()
    if state == HoldStatus.EXPIRED:
        log.warning(
            "hold %s for request %s was released by the sweeper before its settlement",
            hold.public_id,
            hold.request_id,
        )
        return False
    raise HoldClosed(HoldClosed.code, f"Hold {hold.public_id} is {state or 'missing'}; it cannot be closed twice.")


def settle(settlement: Settlement) -> Receipt:
    """Close the hold, debit the cost, write the receipt and its charge entry: one transaction.

    A hold still open releases its amount and pays the cost from it (the cost never exceeds the hold). A hold
    the sweeper already released pays what the balance still covers, never taking the wallet below zero; the
    rest is recorded on the receipt as uncollected."""
    hold, cost, receipt = settlement.hold, settlement.cost, settlement.receipt
    if hold.is_test:
        with transaction.atomic():
            receipt.save(force_insert=True)
            announce(receipt, None)
        return receipt
    now = timezone.now()
    with transaction.atomic():
        closed = _close_hold(hold, HoldStatus.SETTLED, now)
        wallet = Wallet.objects.select_for_update().get(team_id=hold.team_id)
        if closed:
            released, charged = hold.amount_nusd, cost.total_nusd
        else:
            released, charged = 0, min(cost.total_nusd, max(0, wallet.available_nusd))
        receipt.uncollected_nusd = cost.total_nusd - charged
        if receipt.uncollected_nusd:
            log.error(
                "request %s: %s nusd of its cost could not be collected (hold released early, balance exhausted)",
                hold.request_id,
                receipt.uncollected_nusd,
            )
        # The row is locked: what Python computes from it is what the UPDATE writes.
        wallet.held_nusd -= released
        wallet.balance_nusd -= charged
        wallet.updated_at = now
        Wallet.objects.filter(pk=wallet.pk).update(
            held_nusd=F("held_nusd") - released, balance_nusd=F("balance_nusd") - charged, updated_at=now
        )
        if hold.counted:  # the held amount becomes the cost (a hold the sweeper released gave its amount back)
            spend.move(hold.row_id, cost.total_nusd - released)
        receipt.save(force_insert=True)
        if charged:
            LedgerEntry.objects.create(
                wallet_id=wallet.pk,
                kind=LedgerKind.CHARGE,
                amount_nusd=-charged,
                balance_after_nusd=wallet.balance_nusd,
                reference=receipt.public_id,
                created_at=now,
            )
        announce(receipt, wallet)
    return receipt


def release(hold: HoldRef, receipt: Receipt) -> Receipt:
    """A failed request: release the hold, charge nothing, keep the (failed) receipt. No ledger entry."""
    now = timezone.now()
    receipt.created_at = now
    with transaction.atomic():
        wallet = None
        if not hold.is_test:
            _free(hold, now)
            wallet = Wallet.objects.get(team_id=hold.team_id)
        receipt.save(force_insert=True)
        announce(receipt, wallet)
    return receipt


def withdraw(hold: HoldRef) -> None:
    """A hold whose request was refused before any upstream call (the rate limiter said no while the hold was
    being placed): release it as if it had never been placed. No receipt, no ledger entry."""
    if hold.is_test:
        return
    with transaction.atomic():
        _free(hold, timezone.now())


def _free(hold: HoldRef, now: datetime) -> None:
    """Close an open hold as released and give its amount back (nothing to give when the sweeper did it first)."""
    if _close_hold(hold, HoldStatus.RELEASED, now):
        Wallet.objects.filter(team_id=hold.team_id).update(held_nusd=F("held_nusd") - hold.amount_nusd, updated_at=now)
        if hold.counted:
            spend.move(hold.row_id, -hold.amount_nusd)


# --- from the event loop: the same units in a worker thread -------------------------------------------------


async def aplace_hold(request: HoldRequest, *, lease_id: int | None, public_id: str) -> HoldRef:
    try:
        return await run_db(place_hold, request, lease_id=lease_id, public_id=public_id)
    except (OperationalError, InterfaceError) as exc:
        log.warning("could not place a hold for %s: %s", request.request_id, type(exc).__name__)
        raise BillingUnavailable() from None


async def asettle(settlement: Settlement) -> Receipt:
    return await run_db(settle, settlement)


async def arelease(hold: HoldRef, receipt: Receipt) -> Receipt:
    return await run_db(release, hold, receipt)


async def awithdraw(hold: HoldRef) -> None:
    await run_db(withdraw, hold)
