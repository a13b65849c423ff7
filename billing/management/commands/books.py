"""books — revenue, upstream cost and margin from the receipts, the figures of the operator's Books page.

    manage.py books --since 2026-12-01 --until 2026-12-31 [--by day,model,route,team] [--json]

Both dates are UTC days and both are included; the default is this month so far.
"""

from __future__ import annotations

import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import books
from billing.money import exact, usd


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--{name}: expected a date such as 2026-12-01, got {value!r}.") from None


class Command(BaseCommand):
    help = "Print revenue, upstream cost and margin by day, model, route and team (the operator's books)."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="First UTC day (YYYY-MM-DD); default: the 1st of this month.")
        parser.add_argument("--until", help="Last UTC day, included (YYYY-MM-DD); default: today.")
        parser.add_argument("--by", default=",".join(books.GROUPS), help="Breakdowns: day,model,route,team.")
        parser.add_argument("--json", action="store_true", help="One JSON document with exact amounts.")

    def handle(self, *args, **options):
        since, until, by = options["since"], options["until"], options["by"] or ""
        today = timezone.now().date()
        first = _day(since, "since") if since else today.replace(day=1)
        last = _day(until, "until") if until else today
        if first > last:
            raise CommandError("--until is before --since.")
        if (last - first).days > 3660:
            raise CommandError("Ask for at most ten years at once.")
        groups = [g.strip() for g in by.split(",") if g.strip()]
        unknown = sorted(set(groups) - set(books.GROUPS))
        if unknown:
            raise CommandError(
                f"--by: unknown breakdown(s) {', '.join(unknown)}; choose from {', '.join(books.GROUPS)}."
            )
        report = books.books(first, last)
        if options["json"]:
            self.stdout.write(_json(report, groups))
            return
        self.stdout.write(f"Books {first.isoformat()} – {last.isoformat()} (UTC), live receipts")
        self._table("total", [report.total])
        for group in groups:
            lines = getattr(report, group)
            if group == "day":
                lines = [line for line in lines if line.requests]
            self._table(group, lines)
        if report.uncosted:
            self.stdout.write(
                f"\n{report.uncosted} charged receipt(s) were served by routes without upstream cost prices; "
                "their cost counts as 0. Enter the costs on the routes in the admin."
            )

    def _table(self, group: str, lines: list[books.Line]) -> None:
        header = [group, "requests", "revenue", "upstream cost", "margin", "margin %"]
        rows = [
            [
                line.label,
                f"{line.requests:,}",
                usd(line.revenue_nusd),
                usd(line.cost_nusd),
                usd(line.margin_nusd),
                line.margin_percent,
            ]
            for line in lines
        ]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
        self.stdout.write("")
        for row in [header, *rows]:
            first, *numbers = row
            self.stdout.write(
                "  ".join(
                    [str(first).ljust(widths[0]), *(str(c).rjust(w) for c, w in zip(numbers, widths[1:], strict=True))]
                )
            )


def _json(report: books.Books, groups: list[str]) -> str:
    def line(item: books.Line) -> dict:
        return {
            "key": item.key,
            "label": item.label,
            "requests": item.requests,
            "revenue_usd": exact(item.revenue_nusd),
            "upstream_cost_usd": exact(item.cost_nusd),
            "margin_usd": exact(item.margin_nusd),
            "revenue_nusd": item.revenue_nusd,
            "upstream_cost_nusd": item.cost_nusd,
            "margin_nusd": item.margin_nusd,
        }

    body = {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "total": line(report.total),
        **{group: [line(item) for item in getattr(report, group)] for group in groups},
        "uncosted_receipts": report.uncosted,
    }
    return json.dumps(body, indent=2)
