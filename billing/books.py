"""The operator's books: revenue (what teams were charged), upstream cost (what the upstreams billed for the same
requests) and margin, by day, model, route and team, from live receipts, to the nano-dollar.

`books()` is the one query module behind the operator page (dashboard.books), its CSV and `manage.py books`, so all
three show the same figures. Every figure is a sum of receipts: revenue is a receipt's cost less what could not be
collected (exactly its charge in the ledger), cost its `upstream_cost_nusd`, margin the difference. Test receipts
are left out (they charge nothing and record no cost). Days are UTC days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from billing.models import Receipt, ReceiptStatus

GROUPS = ("day", "model", "route", "team")


@dataclass
class Line:
    key: str  # a day's ISO date, a model id, "provider:upstream model", a team's public id; "total"
    label: str
    requests: int = 0
    revenue_nusd: int = 0
    cost_nusd: int = 0

    @property
    def margin_nusd(self) -> int:
        return self.revenue_nusd - self.cost_nusd

    @property
    def margin_percent(self) -> str:
        """For people: the margin as a share of revenue, one decimal ("" without revenue). Not money."""
        if not self.revenue_nusd:
            return ""
        return f"{(Decimal(self.margin_nusd) * 100 / Decimal(self.revenue_nusd)).quantize(Decimal('0.1'))}%"


@dataclass
class Books:
    since: date
    until: date  # inclusive
    total: Line = field(default_factory=lambda: Line("total", "Total"))
    day: list[Line] = field(default_factory=list)
    model: list[Line] = field(default_factory=list)
    route: list[Line] = field(default_factory=list)
    team: list[Line] = field(default_factory=list)
    uncosted: int = 0  # charged receipts served by a route without cost prices (their cost reads 0)

    def groups(self) -> list[tuple[str, list[Line]]]:
        return [(name, getattr(self, name)) for name in GROUPS]


def bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """Whole UTC days: from `since`'s start to the end of `until`."""
    return datetime.combine(since, time.min, tzinfo=UTC), datetime.combine(
        until + timedelta(days=1), time.min, tzinfo=UTC
    )


def receipts(since: date, until: date):
    start, end = bounds(since, until)
    return Receipt.objects.filter(is_test=False, created_at__gte=start, created_at__lt=end)


def _sums() -> dict:
    return {
        "requests": Count("id"),
        "revenue": Coalesce(Sum(F("total_cost_nusd") - F("uncollected_nusd")), 0),
        "cost": Coalesce(Sum("upstream_cost_nusd"), 0),
    }


def _order(lines: list[Line]) -> list[Line]:
    return sorted(lines, key=lambda line: (-line.revenue_nusd, -line.requests, line.label))


def books(since: date, until: date) -> Books:
    """The books of [since, until] (UTC days, both included): five grouped sums over the same receipts."""
    qs = receipts(since, until)
    out = Books(since=since, until=until)
    totals = qs.aggregate(**_sums())
    out.total = Line("total", "Total", totals["requests"], totals["revenue"], totals["cost"])
    per_day = {
        row["day"]: row
        for row in qs.annotate(day=TruncDate("created_at", tzinfo=UTC)).values("day").annotate(**_sums())
    }
    day = since
    while day <= until:
        row = per_day.get(day, {})
        out.day.append(
            Line(
                day.isoformat(),
                day.strftime("%b %-d"),
                row.get("requests", 0),
                row.get("revenue", 0),
                row.get("cost", 0),
            )
        )
        day += timedelta(days=1)
    models: dict[str, Line] = {}
    for r in qs.values("model_routed", "model_requested").annotate(**_sums()):
        name = r["model_routed"] or r["model_requested"]  # a request refused before routing counts for its model
        line = models.setdefault(name, Line(name, name))
        line.requests += r["requests"]
        line.revenue_nusd += r["revenue"]
        line.cost_nusd += r["cost"]
    out.model = _order(list(models.values()))
    out.route = _order(
        [
            Line(
                f"{r['provider']}:{r['upstream_model']}" if r["provider"] else "",
                f"{r['provider']} · {r['upstream_model']}" if r["provider"] else "(not routed)",
                r["requests"],
                r["revenue"],
                r["cost"],
            )
            for r in qs.values("provider", "upstream_model").annotate(**_sums())
        ]
    )
    out.team = _order(
        [
            Line(r["team__public_id"], f"{r['team__name']} ({r['team__slug']})", r["requests"], r["revenue"], r["cost"])
            for r in qs.values("team__public_id", "team__name", "team__slug").annotate(**_sums())
        ]
    )
    out.uncosted = (
        qs.filter(cost_version="", total_cost_nusd__gt=0)
        .filter(Q(status=ReceiptStatus.SUCCEEDED) | Q(status=ReceiptStatus.PARTIAL))
        .count()
    )
    return out


CSV_COLUMNS = [
    "group",
    "key",
    "label",
    "requests",
    "revenue_usd",
    "upstream_cost_usd",
    "margin_usd",
    "revenue_nusd",
    "upstream_cost_nusd",
    "margin_nusd",
]


def csv_rows(report: Books):
    """The books as CSV rows (exact amounts: dollars as digits and nano-dollars), the total first."""
    from billing.money import exact

    def row(group: str, line: Line) -> list:
        return [
            group,
            line.key,
            line.label,
            line.requests,
            exact(line.revenue_nusd),
            exact(line.cost_nusd),
            exact(line.margin_nusd),
            line.revenue_nusd,
            line.cost_nusd,
            line.margin_nusd,
        ]

    yield CSV_COLUMNS
    yield row("total", report.total)
    for group, lines in report.groups():
        for line in lines:
            yield row(group, line)
