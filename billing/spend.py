"""Monthly spend counters: how a key's monthly cap and a project's budget are enforced without a race.

A key with a cap and a project with a budget each get one `SpendCounter` row per calendar month (UTC) holding
what was settled plus what open holds reserve. Placing a hold under such a limit runs, in ONE transaction
(billing.backends.orm.place_hold):

    UPDATE wallet  SET held = held + x WHERE team = … AND balance >= held + x          -- the team's credit
    UPDATE counter SET used = used + x WHERE id = <key's>     AND used <= cap - x      -- the key's cap
    UPDATE counter SET used = used + x WHERE id = <project's> AND used <= budget - x   -- the project's budget
    INSERT hold (…, key_counter, project_counter)

Why this cannot be raced: each conditional UPDATE checks and reserves in one step on a row it then keeps locked
until the transaction ends, so a second hold on the same counter waits, and then evaluates its condition against
the first one's committed total (PostgreSQL re-reads the row; SQLite runs one writer at a time). Nothing is read
and then acted on. A refusal raises inside the transaction, which rolls every reservation back, so a request
refused by its project's budget has not reserved any wallet credit or key cap either.

No deadlock: every transaction that moves money for a team touches the team's wallet row before any counter of
that team (placing a hold updates the wallet first; settling, releasing and the sweeper lock it before they move
counters), so counter locks are only ever taken by the one transaction that holds the wallet's.

Settling replaces the held amount with the cost (`used += cost - held`), releasing and the sweeper take it back
(`used -= held`), in the transaction that ends the hold. A request counts in the month its hold was placed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing.errors import SpendCapExceeded
from billing.models import Hold, Receipt, SpendCounter
from billing.settlement import month_start


def month_of(moment: datetime) -> date:
    return month_start(moment).date()


def _owner(kind: str, owner_id: int) -> dict[str, int]:
    return {"api_key_id": owner_id} if kind == "key" else {"project_id": owner_id}


def _settled(kind: str, owner_id: int, month: date) -> int:
    """What the key's or project's receipts of `month` cost: the opening value of a counter created mid-month
    (the cap or budget was just set, or this is the first capped request this month)."""
    since = datetime(month.year, month.month, 1, tzinfo=UTC)
    spent = Receipt.objects.filter(is_test=False, created_at__gte=since, **_owner(kind, owner_id)).aggregate(
        s=Sum("total_cost_nusd")
    )["s"]
    return spent or 0


def counter_id(kind: str, owner_id: int, month: date) -> int:
    """The counter row of (key|project, month), created on first use. Runs inside the caller's transaction."""
    owner = _owner(kind, owner_id)
    found = SpendCounter.objects.filter(month=month, **owner).values_list("pk", flat=True).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():  # a savepoint: another transaction may create the same row first
            return SpendCounter.objects.create(month=month, used_nusd=_settled(kind, owner_id, month), **owner).pk
    except IntegrityError:
        return SpendCounter.objects.filter(month=month, **owner).values_list("pk", flat=True).get()


def reserve(kind: str, owner_id: int, *, amount_nusd: int, limit_nusd: int, month: date) -> int:
    """Add a hold to the counter if it still fits the limit (the conditional UPDATE); SpendCapExceeded otherwise.
    Must run in the transaction that reserves the wallet's credit, after it (see the module docstring)."""
    pk = counter_id(kind, owner_id, month)
    if not SpendCounter.objects.filter(pk=pk, used_nusd__lte=limit_nusd - amount_nusd).update(
        used_nusd=F("used_nusd") + amount_nusd, updated_at=timezone.now()
    ):
        used = SpendCounter.objects.filter(pk=pk).values_list("used_nusd", flat=True).get()
        raise SpendCapExceeded(limit=kind, cap_nusd=limit_nusd, used_nusd=used)
    return pk


def move(hold_id: int, delta_nusd: int) -> None:
    """Add `delta_nusd` (cost - held at settlement, -held at a release) to the counters a hold moved."""
    if not delta_nusd:
        return
    ids = [pk for pk in Hold.objects.filter(pk=hold_id).values_list("key_counter_id", "project_counter_id").get() if pk]
    if ids:
        SpendCounter.objects.filter(pk__in=ids).update(used_nusd=F("used_nusd") + delta_nusd, updated_at=timezone.now())


def used_this_month(kind: str, owner_id: int, *, now: datetime | None = None) -> int:
    """Settled spend plus open holds this month, as the cap sees it (the counter; receipts if there is none yet)."""
    month = month_of(now or timezone.now())
    used = (
        SpendCounter.objects.filter(month=month, **_owner(kind, owner_id)).values_list("used_nusd", flat=True).first()
    )
    return _settled(kind, owner_id, month) if used is None else used


def open_counter(kind: str, owner_id: int) -> None:
    """Create this month's counter with what was already spent, when a cap or budget is set: from then on every
    capped hold moves it."""
    counter_id(kind, owner_id, month_of(timezone.now()))
