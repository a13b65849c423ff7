"""Money rules: every change to a wallet's balance happens in the same transaction as its ledger entry,
so the wallet always equals the sum of its ledger, and `held` always equals the sum of its open holds.

The request hot path is place_hold → (upstream call, no lock held) → settle | release. Each is one
short transaction of a few statements; concurrency safety comes from conditional UPDATEs
(`… WHERE balance - held >= x`, `… WHERE status = 'open'`), never from long-lived row locks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing import fastpath, pricing
from billing.models import Hold, HoldStatus, LedgerEntry, LedgerKind, Receipt, ReceiptStatus, Wallet
from billing.models import _hold_id as _hold_public_id
from billing.models import _txn_id as _txn_public_id
from billing.money import usd
from billing.signals import receipt_settled, wallet_credited
from config.db import run_db
from config.errors import ApiError

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


class BillingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class HoldRef:
    hold_id: int | None  # None for test keys: nothing is written, no money moves
    public_id: str | None
    team_id: int
    key_id: int | None
    request_id: str
    amount_nusd: int
    is_test: bool


@dataclass(frozen=True, slots=True)
class ReceiptMeta:
    endpoint: str  # "chat.completions" | "completions" | "embeddings"
    model_requested: str
    model_routed: str
    provider: str
    upstream_model: str
    attempts: int = 1
    streamed: bool = False
    latency_ms: int = 0
    ttft_ms: int | None = None
    idempotency_key: str = ""
    key_label: str = ""


def ensure_wallet(team) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(team=team)
    return wallet


def _post(
    wallet_id: int, *, kind: str, amount_nusd: int, reference: str = "", actor=None, reason: str = "", memo: str = ""
) -> LedgerEntry:
    """Move `amount_nusd` (signed) into the wallet and append the ledger entry. Caller holds a transaction."""
    assert transaction.get_connection().in_atomic_block, "_post must run inside a transaction"
    Wallet.objects.filter(pk=wallet_id).update(balance_nusd=F("balance_nusd") + amount_nusd, updated_at=timezone.now())
    balance_after = Wallet.objects.filter(pk=wallet_id).values_list("balance_nusd", flat=True).get()
    return LedgerEntry.objects.create(
        wallet_id=wallet_id,
        kind=kind,
        amount_nusd=amount_nusd,
        balance_after_nusd=balance_after,
        reference=reference,
        actor=actor,
        reason=reason,
        memo=memo,
    )


@transaction.atomic
def grant_credit(
    team,
    *,
    amount_nusd: int,
    actor=None,
    reason: str = "",
    memo: str = "",
    reference: str = "",
    kind: str = LedgerKind.GRANT,
) -> LedgerEntry:
    """Operator or seed credit: a ledger entry like any other. `reason` is internal, `memo` the customer's."""
    if amount_nusd <= 0:
        raise BillingError("invalid_amount", "A grant must be a positive amount.")
    wallet = ensure_wallet(team)
    return _post(
        wallet.pk, kind=kind, amount_nusd=amount_nusd, actor=actor, reason=reason, memo=memo, reference=reference
    )


def _send_wallet_credited(wallet_id: int, entry: LedgerEntry) -> None:
    if wallet_credited.has_listeners(Wallet):
        wallet_credited.send(sender=Wallet, wallet=Wallet.objects.get(pk=wallet_id), entry=entry)


# --- spend cap --------------------------------------------------------------------------------------


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def key_month_spend_nusd(key_id: int, *, now: datetime | None = None) -> int:
    """This calendar month's (UTC) settled live spend of a key plus what its open holds reserve. One query."""
    from accounts.models import ApiKey  # the key row anchors both sums as scalar subqueries

    now = now or timezone.now()
    spent = (
        Receipt.objects.filter(api_key_id=OuterRef("pk"), is_test=False, created_at__gte=month_start(now))
        .values("api_key_id")
        .annotate(s=Sum("total_cost_nusd"))
        .values("s")
    )
    held = (
        Hold.objects.filter(api_key_id=OuterRef("pk"), status=HoldStatus.OPEN)
        .values("api_key_id")
        .annotate(s=Sum("amount_nusd"))
        .values("s")
    )
    zero = Value(0, output_field=IntegerField())
    row = (
        ApiKey.objects.filter(pk=key_id)
        .annotate(spent=Coalesce(Subquery(spent), zero), held=Coalesce(Subquery(held), zero))
        .values_list("spent", "held")
        .first()
    )
    return sum(row) if row else 0


# --- the hot path -----------------------------------------------------------------------------------


def _insufficient(amount_nusd: int) -> ApiError:
    return ApiError(
        402,
        "insufficient_balance",
        f"Your team's available credit does not cover this request (it needs up to "
        f"{usd(amount_nusd)}). Top up to continue.",
        kind="insufficient_balance",
    )


def place_hold(
    *,
    team_id: int,
    key_id: int | None,
    request_id: str,
    amount_nusd: int,
    is_test: bool,
    monthly_spend_cap_nusd: int | None = None,
) -> HoldRef:
    """Reserve `amount_nusd` before the upstream call.

    Two statements: the conditional UPDATE (which both checks and reserves, so two processes can never
    spend the same credit) and the Hold INSERT. The wallet row lock lasts only until this short
    transaction commits; nothing stays locked while upstream works. On PostgreSQL without a spend cap
    both are one statement in autocommit (billing.fastpath): the lock lasts one round trip. With a spend
    cap, one more query runs after the UPDATE: the wallet row lock then serialises this key's concurrent
    placements, so the cap cannot be raced past either.
    """
    _check_hold_amount(amount_nusd)
    if is_test:
        return HoldRef(
            hold_id=None,
            public_id=None,
            team_id=team_id,
            key_id=key_id,
            request_id=request_id,
            amount_nusd=amount_nusd,
            is_test=True,
        )
    if monthly_spend_cap_nusd is None and fastpath.enabled():
        args = _fast_hold_args(team_id=team_id, key_id=key_id, request_id=request_id, amount_nusd=amount_nusd)
        return _fast_hold_ref(args, fastpath.place_hold(**args))
    now = timezone.now()
    with transaction.atomic():
        reserved = Wallet.objects.filter(team_id=team_id, balance_nusd__gte=F("held_nusd") + amount_nusd).update(
            held_nusd=F("held_nusd") + amount_nusd, updated_at=now
        )
        if not reserved:
            raise _insufficient(amount_nusd)
        if monthly_spend_cap_nusd is not None and key_id is not None:
            used = key_month_spend_nusd(key_id, now=now)
            if used + amount_nusd > monthly_spend_cap_nusd:
                raise ApiError(  # raising inside the block rolls the reservation back
                    402,
                    "spend_cap_exceeded",
                    f"This API key's monthly spend cap of {usd(monthly_spend_cap_nusd)} would be "
                    f"exceeded ({usd(used)} used or reserved this month).",
                    kind="insufficient_balance",
                )
        hold = Hold.objects.create(
            # Resolved inside the INSERT, so placing a hold needs no separate wallet lookup.
            wallet_id=Subquery(Wallet.objects.filter(team_id=team_id).values("pk")[:1]),
            api_key_id=key_id,
            request_id=request_id,
            amount_nusd=amount_nusd,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.HOLD_TTL_SECONDS),
        )
    return HoldRef(
        hold_id=hold.pk,
        public_id=hold.public_id,
        team_id=team_id,
        key_id=key_id,
        request_id=request_id,
        amount_nusd=amount_nusd,
        is_test=False,
    )


def _check_hold_amount(amount_nusd: int) -> None:
    if isinstance(amount_nusd, bool) or not isinstance(amount_nusd, int) or amount_nusd < 0:
        raise ValueError("a hold is a non-negative whole number of nano-dollars")


def _fast_hold_args(*, team_id: int, key_id: int | None, request_id: str, amount_nusd: int) -> dict:
    now = timezone.now()
    return {
        "team_id": team_id,
        "key_id": key_id,
        "request_id": request_id,
        "amount_nusd": amount_nusd,
        "public_id": _hold_public_id(),
        "now": now,
        "expires_at": now + timedelta(seconds=settings.HOLD_TTL_SECONDS),
    }


def _fast_hold_ref(args: dict, hold_id: int | None) -> HoldRef:
    if hold_id is None:
        raise _insufficient(args["amount_nusd"])
    return HoldRef(
        hold_id=hold_id,
        public_id=args["public_id"],
        team_id=args["team_id"],
        key_id=args["key_id"],
        request_id=args["request_id"],
        amount_nusd=args["amount_nusd"],
        is_test=False,
    )


def _close_hold(hold: HoldRef, status: str, now: datetime) -> bool:
    """Mark an open hold closed. False when it was not open (the sweeper expired it, or it was closed before)."""
    closed = Hold.objects.filter(pk=hold.hold_id, status=HoldStatus.OPEN).update(status=status, closed_at=now)
    if closed:
        return True
    state = Hold.objects.filter(pk=hold.hold_id).values_list("status", flat=True).first()
    if state == HoldStatus.EXPIRED:
        _log_expired(hold)
        return False
    raise BillingError("hold_closed", f"Hold {hold.public_id} is {state or 'missing'}; it cannot be closed twice.")


def _log_expired(hold: HoldRef) -> None:
    log.warning(
        "hold %s for request %s was already expired by the sweeper; settling without releasing it",
        hold.public_id,
        hold.request_id,
    )


def _receipt(hold: HoldRef, meta: ReceiptMeta, **fields) -> Receipt:
    return Receipt(
        request_id=hold.request_id,
        team_id=hold.team_id,
        api_key_id=hold.key_id,
        key_label=meta.key_label[:60],
        mode="test" if hold.is_test else "live",
        is_test=hold.is_test,
        endpoint=meta.endpoint,
        model_requested=meta.model_requested,
        model_routed=meta.model_routed,
        provider=meta.provider,
        upstream_model=meta.upstream_model,
        attempts=meta.attempts,
        streamed=meta.streamed,
        latency_ms=max(0, meta.latency_ms),
        ttft_ms=None if meta.ttft_ms is None else max(0, meta.ttft_ms),
        idempotency_key=meta.idempotency_key,
        hold_amount_nusd=hold.amount_nusd,
        **fields,
    )


def _clamp(cost: pricing.Cost, limit: int) -> pricing.Cost:
    """Never charge more than was held: take the excess off output first, then input."""
    excess = cost.total_nusd - limit
    if excess <= 0:
        return cost
    output_cut = min(excess, cost.output_nusd)
    return pricing.Cost(input_nusd=cost.input_nusd - (excess - output_cut), output_nusd=cost.output_nusd - output_cut)


def _announce(receipt: Receipt, wallet: Wallet | None) -> None:
    transaction.on_commit(lambda: receipt_settled.send(sender=Receipt, receipt=receipt, wallet=wallet))


@dataclass(slots=True)
class Settlement:
    """A settlement priced but not yet written. Its receipt (public id, tokens, unit prices, exact costs)
    is final: a reply rendered from it agrees with what record() writes."""

    hold: HoldRef
    cost: pricing.Cost
    receipt: Receipt  # unsaved


def price(
    hold: HoldRef, *, usage: pricing.Usage, prices: pricing.Prices, meta: ReceiptMeta, status: str = "succeeded"
) -> Settlement:
    """Compute the cost (once, never above the hold) and the receipt to write. No I/O."""
    if status not in (ReceiptStatus.SUCCEEDED, ReceiptStatus.PARTIAL):
        raise ValueError("settle records a succeeded or partial request; use release for a failed one")
    computed = pricing.cost_of(usage, prices)  # the one place cost is computed; raises on negative tokens
    cost = _clamp(computed, hold.amount_nusd)
    if cost != computed:
        log.warning(
            "request %s cost %s nusd but held only %s nusd; charging the hold amount",
            hold.request_id,
            computed.total_nusd,
            hold.amount_nusd,
        )
    receipt = _receipt(
        hold,
        meta,
        created_at=timezone.now(),
        status=status,
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        input_price_nusd=prices.input_nusd,
        cached_price_nusd=prices.cached_nusd,
        output_price_nusd=prices.output_nusd,
        input_cost_nusd=cost.input_nusd,
        output_cost_nusd=cost.output_nusd,
        total_cost_nusd=cost.total_nusd,
    )
    return Settlement(hold=hold, cost=cost, receipt=receipt)


def settle(
    hold: HoldRef, *, usage: pricing.Usage, prices: pricing.Prices, meta: ReceiptMeta, status: str = "succeeded"
) -> Receipt:
    """Close the hold, debit the exact cost, write the receipt and its charge entry: one transaction."""
    return record(price(hold, usage=usage, prices=prices, meta=meta, status=status))


def record(settlement: Settlement) -> Receipt:
    """Write a priced settlement: one transaction.

    Five statements for a live key: close the hold (conditional, so a hold the sweeper already expired
    is not released twice), one UPDATE moving held and balance together, one SELECT for the balance after,
    the receipt and the ledger entry. A zero-cost settlement writes no ledger entry (nothing moved).
    On PostgreSQL all of it is one statement (billing.fastpath), with the same outcomes.
    """
    hold, receipt = settlement.hold, settlement.receipt
    if hold.is_test:
        with transaction.atomic():
            receipt.save(force_insert=True)
            _announce(receipt, None)
        return receipt
    if fastpath.enabled():
        try:
            prior, wallet = fastpath.settle(**_fast_settle_args(settlement))
        except fastpath.Stale:  # a sweeper expired the hold while we waited for its lock: the ORM path sorts it out
            return _settle_orm(settlement)
        _check_fast_settled(hold, prior, wallet)
        _announce(receipt, wallet)
        return receipt
    return _settle_orm(settlement)


def _fast_settle_args(settlement: Settlement) -> dict:
    hold = settlement.hold
    return {
        "hold_id": hold.hold_id,
        "team_id": hold.team_id,
        "amount_nusd": hold.amount_nusd,
        "cost_nusd": settlement.cost.total_nusd,
        "receipt": settlement.receipt,
        "txn_public_id": _txn_public_id(),
        "now": timezone.now(),
    }


def _check_fast_settled(hold: HoldRef, prior: str | None, wallet: Wallet | None) -> None:
    if wallet is None:
        raise BillingError("hold_closed", f"Hold {hold.public_id} is {prior or 'missing'}; it cannot be closed twice.")
    if prior == HoldStatus.EXPIRED:
        _log_expired(hold)


def _settle_orm(settlement: Settlement) -> Receipt:
    hold, cost, receipt = settlement.hold, settlement.cost, settlement.receipt
    now = timezone.now()
    with transaction.atomic():
        releases = _close_hold(hold, HoldStatus.SETTLED, now)
        release = hold.amount_nusd if releases else 0
        Wallet.objects.filter(team_id=hold.team_id).update(
            held_nusd=F("held_nusd") - release, balance_nusd=F("balance_nusd") - cost.total_nusd, updated_at=now
        )
        wallet = Wallet.objects.get(team_id=hold.team_id)
        receipt.save(force_insert=True)
        if cost.total_nusd:
            LedgerEntry.objects.create(
                wallet_id=wallet.pk,
                kind=LedgerKind.CHARGE,
                amount_nusd=-cost.total_nusd,
                balance_after_nusd=wallet.balance_nusd,
                reference=receipt.public_id,
                created_at=now,
            )
        _announce(receipt, wallet)
    return receipt


def release(hold: HoldRef, *, meta: ReceiptMeta, error_code: str) -> Receipt:
    """A failed upstream call: release the hold, charge nothing, keep a failed receipt. No ledger entry."""
    receipt = _receipt(hold, meta, status=ReceiptStatus.FAILED, error_code=error_code[:60])
    if hold.is_test:
        with transaction.atomic():
            receipt.save(force_insert=True)
            _announce(receipt, None)
        return receipt
    now = timezone.now()
    with transaction.atomic():
        if _close_hold(hold, HoldStatus.RELEASED, now):
            Wallet.objects.filter(team_id=hold.team_id).update(
                held_nusd=F("held_nusd") - hold.amount_nusd, updated_at=now
            )
        receipt.created_at = now
        receipt.save(force_insert=True)
        transaction.on_commit(
            lambda: receipt_settled.send(
                sender=Receipt, receipt=receipt, wallet=Wallet.objects.get(team_id=hold.team_id)
            )
        )
    return receipt


async def aplace_hold(
    *,
    team_id: int,
    key_id: int | None,
    request_id: str,
    amount_nusd: int,
    is_test: bool,
    monthly_spend_cap_nusd: int | None = None,
) -> HoldRef:
    """place_hold from the event loop: the one-statement hold on the loop's own connection (no thread hop)
    where it applies, otherwise place_hold in a worker thread."""
    if is_test:  # nothing to write
        return place_hold(team_id=team_id, key_id=key_id, request_id=request_id, amount_nusd=amount_nusd, is_test=True)
    if monthly_spend_cap_nusd is not None or not fastpath.async_enabled():
        return await run_db(
            place_hold,
            team_id=team_id,
            key_id=key_id,
            request_id=request_id,
            amount_nusd=amount_nusd,
            is_test=is_test,
            monthly_spend_cap_nusd=monthly_spend_cap_nusd,
        )
    _check_hold_amount(amount_nusd)
    args = _fast_hold_args(team_id=team_id, key_id=key_id, request_id=request_id, amount_nusd=amount_nusd)
    try:
        hold_id = await fastpath.aplace_hold(**args)
    except fastpath.UNAVAILABLE as exc:
        log.warning("could not place a hold for %s: %s", request_id, type(exc).__name__)
        raise ApiError(
            503,
            "billing_unavailable",
            "Billing is briefly unavailable, so the request was not sent "
            "upstream and nothing was charged. Retry in a moment.",
        ) from None
    return _fast_hold_ref(args, hold_id)


async def asettle(
    hold: HoldRef, *, usage: pricing.Usage, prices: pricing.Prices, meta: ReceiptMeta, status: str = "succeeded"
) -> Receipt:
    return await arecord(price(hold, usage=usage, prices=prices, meta=meta, status=status))


async def arecord(settlement: Settlement) -> Receipt:
    """record() from the event loop: the one-statement settlement on the loop's own connection where it
    applies, otherwise record() in a worker thread.

    receipt_settled is then sent on the event loop: its receivers must not block (both of ours hand
    anything slow to a thread)."""
    hold, receipt = settlement.hold, settlement.receipt
    if hold.is_test or not fastpath.async_enabled():
        return await run_db(record, settlement)
    try:
        prior, wallet = await fastpath.asettle(**_fast_settle_args(settlement))
    except fastpath.Stale:
        return await run_db(_settle_orm, settlement)
    _check_fast_settled(hold, prior, wallet)
    receipt_settled.send(sender=Receipt, receipt=receipt, wallet=wallet)
    return receipt


class Unsettled:
    """Settlements of this process whose reply went out before they were written (the gateway records a
    plain request's settlement right after sending its response). Balance and receipt reads wait for the
    team's to land, so a client reading right after its reply, on the same keep-alive connection and so
    the same process, sees its charge. Thread-safe: the event loop counts, read views (threads) wait."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._teams: dict[int, int] = {}

    def add(self, team_id: int) -> None:
        with self._changed:
            self._teams[team_id] = self._teams.get(team_id, 0) + 1

    def done(self, team_id: int) -> None:
        with self._changed:
            left = self._teams.get(team_id, 0) - 1
            if left > 0:
                self._teams[team_id] = left
            else:
                self._teams.pop(team_id, None)
            self._changed.notify_all()

    def wait(self, team_id: int | None = None, timeout: float = 2.0) -> bool:
        """Block until the team's (or, with None, every team's) pending settlements are written. False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not (self._teams.get(team_id) if team_id else self._teams), timeout=timeout
            )


unsettled = Unsettled()


async def arecord_after_reply(settlement: Settlement) -> Receipt | None:
    """arecord for a settlement whose reply was already sent (registered in `unsettled` by the caller).

    A database error is retried with backoff; if it persists the request goes unpaid (its hold expires and
    is released by the sweeper) and an error is logged: the books stay balanced either way."""
    try:
        for delay in (0.0, 0.05, 0.25, 1.0, 3.0):
            if delay:
                await asyncio.sleep(delay)
            try:
                return await arecord(settlement)
            except BillingError as exc:  # already written (an earlier attempt committed before failing)
                log.warning("settlement of %s after the reply: %s", settlement.hold.request_id, exc.message)
                return None
            except Exception as exc:  # noqa: BLE001 - retried, then logged below
                log.warning(
                    "settlement of %s after the reply failed (%s); retrying",
                    settlement.hold.request_id,
                    type(exc).__name__,
                )
        log.error(
            "could not record the settlement of %s (receipt %s) after its reply; the hold will expire unpaid",
            settlement.hold.request_id,
            settlement.receipt.public_id,
        )
        return None
    finally:
        unsettled.done(settlement.hold.team_id)


async def arelease(hold: HoldRef, *, meta: ReceiptMeta, error_code: str) -> Receipt:
    return await run_db(release, hold, meta=meta, error_code=error_code)


# --- the sweeper --------------------------------------------------------------------------------------


def release_expired_holds(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Give back credit reserved by requests that died. Returns how many holds were expired.

    Each hold is expired by its own conditional UPDATE (`status = 'open'`), so a settle racing the sweeper
    wins or loses cleanly: exactly one of them releases the hold. Bounded by `limit` per run.
    """
    now = now or timezone.now()
    expired = 0
    while expired < limit:
        batch = list(
            Hold.objects.filter(status=HoldStatus.OPEN, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", "wallet_id", "amount_nusd")[: min(SWEEP_BATCH, limit - expired)]
        )
        if not batch:
            break
        for pk, wallet_id, amount in batch:
            with transaction.atomic():
                if Hold.objects.filter(pk=pk, status=HoldStatus.OPEN).update(status=HoldStatus.EXPIRED, closed_at=now):
                    Wallet.objects.filter(pk=wallet_id).update(held_nusd=F("held_nusd") - amount, updated_at=now)
                    expired += 1
        if len(batch) < SWEEP_BATCH:
            break
    if expired:
        log.info("released %s expired hold(s)", expired)
    return expired
