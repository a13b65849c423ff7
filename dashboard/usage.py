"""Usage numbers for a team and a date range: integer sums straight from the receipts, so they match them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Case, CharField, Count, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.models import Receipt

TOKENS = F("prompt_tokens") + F("cached_tokens") + F("completion_tokens")
# Requests paid without an API key are the dashboard Playground's (accounts/playground.py): one row per member,
# named as their receipts are ("Playground (<email>)"); a receipt whose key was deleted stays "(deleted key)".
KEYLESS = Case(
    When(Q(api_key__isnull=True, key_label__startswith="Playground ("), then=F("key_label")),
    default=Value(""),
    output_field=CharField(),
)


@dataclass
class Row:
    label: str
    requests: int = 0
    tokens: int = 0
    cost_nusd: int = 0
    key: str = ""  # a date's ISO form, a model id or a key public id


@dataclass
class UsageReport:
    start: date
    end: date
    mode: str
    days: list[Row] = field(default_factory=list)
    by_model: list[Row] = field(default_factory=list)
    by_key: list[Row] = field(default_factory=list)
    total: Row = field(default_factory=lambda: Row("Total"))


def bounds(start: date, end: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    return datetime.combine(start, time.min, tzinfo=tz), datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz)


def receipts_in_range(team, start: date, end: date, mode: str, project=None):
    since, until = bounds(start, end)
    receipts = Receipt.objects.filter(team=team, created_at__gte=since, created_at__lt=until, is_test=(mode == "test"))
    return receipts if project is None else receipts.filter(project=project)


def _sums():
    return {"requests": Count("id"), "tokens": Coalesce(Sum(TOKENS), 0), "cost": Coalesce(Sum("total_cost_nusd"), 0)}


def default_mode(team, start: date, end: date) -> str:
    """Live when the team made live requests in the range; test when it made only test ones (a new team trying
    the simulator sees its requests, not an empty report above a list of them)."""
    since, until = bounds(start, end)
    in_range = Receipt.objects.filter(team=team, created_at__gte=since, created_at__lt=until)
    if in_range.filter(is_test=False).exists() or not in_range.filter(is_test=True).exists():
        return "live"
    return "test"


def usage_report(team, start: date, end: date, mode: str = "live", project=None) -> UsageReport:
    """The team's usage in the range (only a project's receipts, with `project`)."""
    qs = receipts_in_range(team, start, end, mode, project)
    report = UsageReport(start=start, end=end, mode=mode)
    per_day = {
        r["day"]: r for r in qs.annotate(day=TruncDate("created_at")).values("day").annotate(**_sums()).order_by()
    }
    day, today = start, timezone.localdate()
    while day <= end:
        r = per_day.get(day, {})
        label = "Today" if day == today else day.strftime("%b %-d")
        report.days.append(Row(label, r.get("requests", 0), r.get("tokens", 0), r.get("cost", 0), key=day.isoformat()))
        day += timedelta(days=1)
    report.by_model = [
        Row(r["model_requested"], r["requests"], r["tokens"], r["cost"], key=r["model_requested"])
        for r in qs.values("model_requested").annotate(**_sums()).order_by("-cost", "-requests", "model_requested")
    ]
    report.by_key = [
        Row(
            r["api_key__name"] or r["keyless"] or "(deleted key)",
            r["requests"],
            r["tokens"],
            r["cost"],
            key=r["api_key__public_id"] or "",
        )
        for r in qs.annotate(keyless=KEYLESS)
        .values("api_key__public_id", "api_key__name", "keyless")
        .annotate(**_sums())
        .order_by("-cost", "-requests")
    ]
    totals = qs.aggregate(**_sums())
    report.total = Row("Total", totals["requests"], totals["tokens"], totals["cost"])
    return report
