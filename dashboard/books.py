"""The operator's Books page (staff only): revenue, upstream cost and margin by day, model, route and team for a
date range, as SVG charts with the numbers beside them, and the same figures as CSV. Everything comes from
billing.books, which `manage.py books` prints too."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing import books as ledger_books
from dashboard import charts
from dashboard.forms import BooksRangeForm
from dashboard.templatetags.dashboard_tags import usd


def _staff_report(request):
    """Staff only; anyone else gets the 404 of a page that does not exist (operators' numbers are not shown)."""
    if not request.user.is_staff:
        raise Http404("No such page.")
    form = BooksRangeForm(request.GET)
    if not form.is_valid():
        return form, None
    since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    form = BooksRangeForm({"since": since, "until": until})  # the range picker shows the range reported on
    return form, ledger_books.books(since, until)


@login_required
@require_GET
def books(request):
    form, report = _staff_report(request)
    ctx = {"form": form, "report": report, "section": "books"}
    if report is not None:
        ctx["day_chart"] = charts.pair_chart(
            report.day,
            "revenue_nusd",
            "cost_nusd",
            usd,
            title="Revenue and upstream cost per day",
            names=("revenue", "upstream cost"),
        )
        ctx["groups"] = [
            (
                "model",
                "By model",
                report.model,
                charts.hbar_chart(report.model, "margin_nusd", usd, title="Margin by model"),
            ),
            (
                "route",
                "By provider and route",
                report.route,
                charts.hbar_chart(report.route, "margin_nusd", usd, title="Margin by route"),
            ),
            (
                "team",
                "By team",
                report.team,
                charts.hbar_chart(report.team, "revenue_nusd", usd, title="Revenue by team"),
            ),
        ]
    return render(request, "dashboard/books.html", ctx, status=200 if report is not None else 400)


class _Echo:
    def write(self, value):
        return value


@login_required
@require_GET
def books_csv(request):
    form, report = _staff_report(request)
    if report is None:
        raise Http404("Pick a valid range.")
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in ledger_books.csv_rows(report)), content_type="text/csv; charset=utf-8"
    )
    name = f"tollgate-books-{report.since.isoformat()}-{report.until.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
