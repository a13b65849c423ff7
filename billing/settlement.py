"""The one interface the gateway pays through.

    place_hold(HoldRequest) -> Hold          before the upstream call (InsufficientBalance, SpendCapExceeded,
                                             BillingUnavailable)
    price(hold, usage, prices, meta, upstream, billed) -> Settlement
                                             the cost, computed once, never above the hold, and the upstream
                                             cost of the same usage at the serving route's cost prices; no I/O
    record(settlement) -> Receipt            a succeeded or partial request: debit, receipt, charge entry
    release(hold, meta, error_code, billed) -> Receipt a failed request: nothing charged, a failed receipt

Every hold ends exactly once: by record or release, or, if its process dies first, by the sweeper
(billing.leases). Each call has a synchronous form (`*_sync`) for work that must share a caller's
transaction (an idempotent reply, a stored completion) and an async one for the event loop.

Two backends implement it, chosen once from the database vendor (`backend()`):
- PostgreSQL (billing/backends/postgres.py): the hold and the settlement are ONE prepared statement each, on a
  per-event-loop async psycopg pool;
- the ORM (billing/backends/orm.py): the portable form, for SQLite (the embedded default), in a worker thread.
Both write the same rows with the same outcomes, and the same tests cover both. A hold under a key's monthly cap
or a project's budget (`HoldRequest.counted`) always takes the ORM form, on both databases: it moves the monthly
spend counters (billing.spend) in the same transaction as the wallet, which the one-statement form leaves out so
the common request stays one statement.

Margins: a live receipt records, beside what the team was charged, `upstream_cost_nusd`: its usage at the
serving route's cost prices (`UpstreamPrices`, the route's cost version in force at the hold) plus the failed
attempts an upstream billed anyway (`UpstreamBill`, when it reported usage on a failure). Test receipts record
no upstream cost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.utils import timezone

from billing import leases, pricing
from billing.errors import BillingUnavailable, HoldClosed
from billing.models import Receipt, ReceiptStatus, Wallet
from billing.models import _hold_id as new_hold_public_id
from billing.signals import receipt_settled
from config import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


# --- the types that cross into the gateway --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldRequest:
    team_id: int
    key_id: int | None
    request_id: str
    amount_nusd: int
    is_test: bool
    spend_cap_nusd: int | None = None  # the key's monthly cap
    # False for work that outlives this process's request on purpose (an asynchronous job): the hold then
    # expires after HOLD_TTL_SECONDS instead of living with the process's lease.
    leased: bool = True
    project_id: int | None = None  # the key's project: its receipts count there
    project_budget_nusd: int | None = None  # that project's monthly budget

    def __post_init__(self) -> None:
        if isinstance(self.amount_nusd, bool) or not isinstance(self.amount_nusd, int) or self.amount_nusd < 0:
            raise ValueError("a hold is a non-negative whole number of nano-dollars")

    @property
    def counted(self) -> bool:
        """The hold must also fit a monthly counter (the key's cap, the project's budget)."""
        return not self.is_test and (
            (self.spend_cap_nusd is not None and self.key_id is not None)
            or (self.project_budget_nusd is not None and self.project_id is not None)
        )


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: int | None  # None for test keys: nothing is written, no money moves
    public_id: str | None
    team_id: int
    key_id: int | None
    request_id: str
    amount_nusd: int
    is_test: bool
    project_id: int | None = None
    counted: bool = False  # it moved monthly spend counters, which its end must move back (billing.spend)

    @property
    def row_id(self) -> int:
        """The hold row's id: only a live hold has a row (a test hold writes nothing)."""
        if self.hold_id is None:
            raise ValueError(f"a test hold has no row (request {self.request_id})")
        return self.hold_id

    @classmethod
    def live(cls, request: HoldRequest, *, hold_id: int, public_id: str) -> Hold:
        return cls(
            hold_id,
            public_id,
            request.team_id,
            request.key_id,
            request.request_id,
            request.amount_nusd,
            False,
            request.project_id,
            request.counted,
        )

    @classmethod
    def test(cls, request: HoldRequest) -> Hold:
        return cls(
            None,
            None,
            request.team_id,
            request.key_id,
            request.request_id,
            request.amount_nusd,
            True,
            request.project_id,
        )


@dataclass(frozen=True, slots=True)
class ReceiptMeta:
    endpoint: str  # the operation's name: "chat.completions", "embeddings", …
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
    price_version: str = ""  # the sale price version the hold was placed under (gateway.PriceVersion)
    max_cost_nusd: int | None = None  # the request's own cost cap, if it had one


@dataclass(frozen=True, slots=True)
class UpstreamPrices:
    """What a route's upstream charges the operator per token (and per image): its cost version in force when the
    hold was placed."""

    prices: pricing.Prices
    version: str


@dataclass(frozen=True, slots=True)
class UpstreamBill:
    """A failed attempt the upstream billed anyway (it reported usage on the failure), at its route's cost."""

    usage: pricing.Usage
    upstream: UpstreamPrices


def upstream_cost(usage: pricing.Usage, upstream: UpstreamPrices | None, billed: Sequence[UpstreamBill] = ()) -> int:
    """The operator's cost of a request: exact integers, like the customer's."""
    total = pricing.cost_of(usage, upstream.prices).total_nusd if upstream is not None else 0
    return total + sum(pricing.cost_of(bill.usage, bill.upstream.prices).total_nusd for bill in billed)


@dataclass(slots=True)
class Settlement:
    """A settlement priced but not yet written. Its receipt (public id, tokens, unit prices, exact costs) is
    final: a reply rendered from it agrees with what `record` writes."""

    hold: Hold
    cost: pricing.Cost
    receipt: Receipt  # unsaved


class Backend(Protocol):
    """What billing/backends/orm.py and billing/backends/postgres.py each provide (as modules)."""

    def place_hold(self, request: HoldRequest, *, lease_id: int | None, public_id: str) -> Hold: ...

    def settle(self, settlement: Settlement) -> Receipt: ...

    def release(self, hold: Hold, receipt: Receipt) -> Receipt: ...

    def withdraw(self, hold: Hold) -> None: ...

    async def aplace_hold(self, request: HoldRequest, *, lease_id: int | None, public_id: str) -> Hold: ...

    async def asettle(self, settlement: Settlement) -> Receipt: ...

    async def arelease(self, hold: Hold, receipt: Receipt) -> Receipt: ...

    async def awithdraw(self, hold: Hold) -> None: ...


@functools.cache
def backend() -> Backend:
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        from billing.backends import postgres

        return postgres
    from billing.backends import orm

    return orm


# --- pure pieces ---------------------------------------------------------------------------------------


def hold_expiry(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HOLD_TTL_SECONDS)


def announce(receipt: Receipt, wallet: Wallet | None) -> None:
    """Tell listeners (live dashboard, auto-recharge) once the settlement commits."""
    transaction.on_commit(lambda: receipt_settled.send(sender=Receipt, receipt=receipt, wallet=wallet))


_MISSING = object()


@functools.cache
def _receipt_layout() -> tuple[tuple[str, Any], ...]:
    return tuple((f.attname, f) for f in Receipt._meta.concrete_fields)


def _new_receipt(values: dict[str, Any]) -> Receipt:
    """`Receipt(**values)` (values by attname), built as Django builds the rows it loads: positionally, every
    concrete field in order, the field's default where no value is given. The keyword form matches each of the
    ~40 fields against the keywords one at a time, several times the cost, and every request makes a receipt."""
    args = []
    given = 0
    for attname, field in _receipt_layout():
        value = values.get(attname, _MISSING)
        if value is _MISSING:
            args.append(field.get_default())
        else:
            args.append(value)
            given += 1
    if given != len(values):
        unknown = sorted(set(values) - {attname for attname, _ in _receipt_layout()})
        raise TypeError(f"Receipt() got unexpected keyword arguments: {unknown}")
    return Receipt(*args)


def _receipt(hold: Hold, meta: ReceiptMeta, **fields) -> Receipt:
    return _new_receipt(
        dict(
            request_id=hold.request_id,
            team_id=hold.team_id,
            api_key_id=hold.key_id,
            project_id=hold.project_id,
            price_version=meta.price_version,
            max_cost_nusd=meta.max_cost_nusd,
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
    )


def _clamp(cost: pricing.Cost, limit: int) -> pricing.Cost:
    """Never charge more than was held: take the excess off output first, then input."""
    excess = cost.total_nusd - limit
    if excess <= 0:
        return cost
    output_cut = min(excess, cost.output_nusd)
    return pricing.Cost(input_nusd=cost.input_nusd - (excess - output_cut), output_nusd=cost.output_nusd - output_cut)


def price(
    hold: Hold,
    *,
    usage: pricing.Usage,
    prices: pricing.Prices,
    meta: ReceiptMeta,
    status: str = ReceiptStatus.SUCCEEDED,
    upstream: UpstreamPrices | None = None,
    billed: Sequence[UpstreamBill] = (),
) -> Settlement:
    """Compute the cost (once, never above the hold), the upstream cost of the same usage at `upstream` (plus the
    failed attempts upstream `billed`) and the receipt to write. No I/O. A test hold records no upstream cost."""
    if status not in (ReceiptStatus.SUCCEEDED, ReceiptStatus.PARTIAL):
        raise ValueError("record() takes a succeeded or partial request; release() a failed one")
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
        images=usage.images,
        image_price_nusd=prices.image_nusd,
        input_cost_nusd=cost.input_nusd,
        output_cost_nusd=cost.output_nusd,
        total_cost_nusd=cost.total_nusd,
        # What upstream billed is the usage it served, whatever was clamped off the customer's charge.
        upstream_cost_nusd=0 if hold.is_test else upstream_cost(usage, upstream, billed),
        cost_version="" if hold.is_test or upstream is None else upstream.version,
    )
    return Settlement(hold=hold, cost=cost, receipt=receipt)


def failed_receipt(hold: Hold, meta: ReceiptMeta, error_code: str, billed: Sequence[UpstreamBill] = ()) -> Receipt:
    """Nothing charged; the upstream cost of failed attempts an upstream billed anyway (a negative margin)."""
    cost = 0 if hold.is_test else sum(upstream_cost(bill.usage, bill.upstream) for bill in billed)
    return _receipt(hold, meta, status=ReceiptStatus.FAILED, error_code=error_code[:60], upstream_cost_nusd=cost)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- the interface --------------------------------------------------------------------------------------


def place_hold_sync(request: HoldRequest) -> Hold:
    """Reserve before the upstream call, inside the caller's transaction if there is one."""
    if request.is_test:
        return Hold.test(request)
    lease_id = leases.current() if request.leased else None
    return backend().place_hold(request, lease_id=lease_id, public_id=new_hold_public_id())


async def place_hold(request: HoldRequest) -> Hold:
    if request.is_test:  # nothing to write
        return Hold.test(request)
    lease_id = await leases.acurrent() if request.leased else None
    return await backend().aplace_hold(request, lease_id=lease_id, public_id=new_hold_public_id())


def record_sync(settlement: Settlement) -> Receipt:
    return backend().settle(settlement)


async def record(settlement: Settlement) -> Receipt:
    """Write a priced settlement. `receipt_settled` is then sent on the event loop: its receivers must not
    block (both of ours hand anything slow to a thread)."""
    return await backend().asettle(settlement)


def release_sync(hold: Hold, *, meta: ReceiptMeta, error_code: str, billed: Sequence[UpstreamBill] = ()) -> Receipt:
    return backend().release(hold, failed_receipt(hold, meta, error_code, billed))


async def release(hold: Hold, *, meta: ReceiptMeta, error_code: str, billed: Sequence[UpstreamBill] = ()) -> Receipt:
    return await backend().arelease(hold, failed_receipt(hold, meta, error_code, billed))


async def withdraw(hold: Hold) -> None:
    """Undo a hold whose request was refused before its upstream call: released, no receipt, nothing charged."""
    await backend().awithdraw(hold)


class Unsettled:
    """Settlements of this process whose reply went out before they were written (the gateway writes a plain
    request's settlement right after sending its response). Balance and receipt reads wait for the team's to
    land, so a client reading right after its reply, on the same keep-alive connection and so the same
    process, sees its charge. Thread-safe: the event loop counts, read views (threads) wait."""

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

    def count(self) -> int:
        with self._changed:
            return sum(self._teams.values())


unsettled = Unsettled()

# Back-off between attempts to write something the database must get (a settlement whose reply was already
# sent, a release); the last delay repeats until the database answers or the process ends (then the sweeper
# frees the hold).
RETRY_BACKOFF = (0.05, 0.25, 1.0, 3.0, 10.0, 30.0)
UNSETTLED_WAIT_ATTEMPTS = 4  # ~1.3 s: how long balance and receipt reads wait for a pending settlement


def transient(exc: BaseException) -> bool:
    """A database that is away (worth retrying), as opposed to a write that can never succeed."""
    return isinstance(exc, BillingUnavailable | OperationalError | InterfaceError)


GAVE_UP = object()  # what `eventually` returns when it gave up


async def eventually(
    attempt: Callable[[], Awaitable[T]], what: str, *, impatient: Callable[[], None] | None = None
) -> T | object:
    """Run `attempt` until it succeeds. While the database is away it is retried with back-off for as long as
    this process lives; any other error is logged and given up (`GAVE_UP` is returned). `impatient` is called
    once, after UNSETTLED_WAIT_ATTEMPTS failed attempts."""
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not transient(exc):
                log.exception("%s failed and cannot be retried", what)
                metrics.settlements_given_up.inc()
                return GAVE_UP
        failures += 1
        metrics.settlements_retried.inc()
        log.log(
            logging.WARNING if failures < UNSETTLED_WAIT_ATTEMPTS else logging.ERROR,
            "%s: the database is unavailable (attempt %s); retrying",
            what,
            failures,
        )
        if failures == UNSETTLED_WAIT_ATTEMPTS and impatient is not None:
            impatient()
        await asyncio.sleep(RETRY_BACKOFF[min(failures, len(RETRY_BACKOFF)) - 1])


async def record_after_reply(settlement: Settlement) -> Receipt | None:
    """`record` for a settlement whose reply was already sent (the caller registered it in `unsettled`).

    The reply promised this receipt, so a database that is away is waited for (reads stop waiting for it after
    a few attempts). A write that can never succeed is logged and the hold released instead, so it still ends.
    """
    team_id = settlement.hold.team_id
    waiting = True

    def stop_waiting() -> None:
        nonlocal waiting
        if waiting:
            waiting = False
            unsettled.done(team_id)

    async def attempt() -> Receipt | None:
        try:
            return await record(settlement)
        except HoldClosed:  # an earlier attempt committed before its connection failed
            return None

    try:
        receipt = await eventually(attempt, f"the settlement of {settlement.hold.request_id}", impatient=stop_waiting)
        if receipt is GAVE_UP:
            failed = failed_receipt(settlement.hold, _meta_of(settlement.receipt), "settlement_failed")
            failed.upstream_cost_nusd = settlement.receipt.upstream_cost_nusd  # upstream served it all the same
            await eventually(
                functools.partial(backend().arelease, settlement.hold, failed),
                f"the release of {settlement.hold.request_id}",
            )
            return None
        return receipt  # type: ignore[return-value]
    finally:
        stop_waiting()


def _meta_of(receipt: Receipt) -> ReceiptMeta:
    return ReceiptMeta(
        endpoint=receipt.endpoint,
        model_requested=receipt.model_requested,
        model_routed=receipt.model_routed,
        provider=receipt.provider,
        upstream_model=receipt.upstream_model,
        attempts=receipt.attempts,
        streamed=receipt.streamed,
        latency_ms=receipt.latency_ms,
        ttft_ms=receipt.ttft_ms,
        idempotency_key=receipt.idempotency_key,
        key_label=receipt.key_label,
        price_version=receipt.price_version,
        max_cost_nusd=receipt.max_cost_nusd,
    )
