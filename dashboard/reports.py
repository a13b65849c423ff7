"""Billing, receipts and usage pages: read-only views over billing's rows (top-up and auto-recharge
forms post to billing.views, which call billing.topups)."""

from __future__ import annotations

import csv
from datetime import datetime, time, timedelta

from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.access import TeamAccess
from accounts.models import ApiKey
from accounts.permissions import Action
from billing import money, stripe_client
from billing.models import LedgerEntry, LedgerKind, Receipt, ReceiptStatus
from billing.pricing import nusd_to_usd
from billing.services import ensure_wallet
from dashboard import charts
from dashboard.common import page, team_page
from dashboard.forms import ReceiptFilterForm, UsageRangeForm
from dashboard.templatetags.dashboard_tags import usd
from dashboard.usage import usage_report
from gateway.models import ImageJob

PAGE_SIZE = 25


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


@team_page(Action.BILLING_VIEW)
def billing(request, access: TeamAccess):
    team = access.team
    wallet = ensure_wallet(team)
    kind = request.GET.get("kind", "")
    entries = LedgerEntry.objects.filter(wallet=wallet).select_related("actor")
    if kind in LedgerKind.values:
        entries = entries.filter(kind=kind)
    ledger = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {
        "wallet": wallet,
        "ledger": ledger,
        "kind": kind,
        "kinds": LedgerKind.choices,
        "can_manage": access.can(Action.BILLING_MANAGE),
        "stripe_configured": stripe_client.is_configured(),
        "recent": Receipt.objects.filter(team=team).select_related("api_key")[:5],
        "auto_recharge": {
            "threshold": nusd_to_usd(wallet.auto_recharge_threshold_nusd),
            "amount": nusd_to_usd(wallet.auto_recharge_amount_nusd),
        },
    }
    return page(request, "dashboard/billing.html", access, "billing", ctx)


def _filtered_receipts(request, access: TeamAccess):
    team = access.team
    keys = [(k.public_id, k.name) for k in ApiKey.objects.filter(team=team).only("public_id", "name")]
    models = Receipt.objects.filter(team=team).order_by().values_list("model_requested", flat=True).distinct()
    form = ReceiptFilterForm(request.GET or None, keys=keys, models=sorted(models), statuses=ReceiptStatus.choices)
    qs = Receipt.objects.filter(team=team).select_related("api_key")
    if form.is_bound and form.is_valid():
        d = form.cleaned_data
        if d["start"]:
            qs = qs.filter(created_at__gte=_day_start(d["start"]))
        if d["end"]:
            qs = qs.filter(created_at__lt=_day_start(d["end"] + timedelta(days=1)))
        if d["key"]:
            qs = qs.filter(api_key__public_id=d["key"])
        if d["model"]:
            qs = qs.filter(model_requested=d["model"])
        if d["status"]:
            qs = qs.filter(status=d["status"])
        if d["mode"]:
            qs = qs.filter(is_test=d["mode"] == "test")
    elif form.is_bound:
        qs = qs.none()  # a bad filter shows nothing rather than everything
    return form, qs


@team_page(Action.BILLING_VIEW)
def receipts(request, access: TeamAccess):
    form, qs = _filtered_receipts(request, access)
    receipts_page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {"form": form, "receipts": receipts_page, "filtered": any(request.GET.get(f) for f in form.fields)}
    return page(request, "dashboard/receipts.html", access, "receipts", ctx, status=400 if form.errors else 200)


CSV_COLUMNS = [
    "receipt_id",
    "request_id",
    "created_at",
    "key",
    "mode",
    "endpoint",
    "model_requested",
    "model_routed",
    "provider",
    "status",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "input_price_usd_per_million",
    "cached_price_usd_per_million",
    "output_price_usd_per_million",
    "input_cost_usd",
    "output_cost_usd",
    "total_cost_usd",
    "total_cost_nusd",
]


class _Echo:
    def write(self, value):
        return value


def _csv_rows(qs):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for r in qs.iterator(chunk_size=500):
        yield writer.writerow(
            [
                r.public_id,
                r.request_id,
                r.created_at.isoformat(),
                r.key_label or (r.api_key.name if r.api_key else ""),
                "test" if r.is_test else "live",
                r.endpoint,
                r.model_requested,
                r.model_routed,
                r.provider,
                r.status,
                r.prompt_tokens,
                r.cached_tokens,
                r.completion_tokens,
                money.exact(money.per_million(r.input_price_nusd)),
                money.exact(money.per_million(r.cached_price_nusd)),
                money.exact(money.per_million(r.output_price_nusd)),
                money.exact(r.input_cost_nusd),
                money.exact(r.output_cost_nusd),
                money.exact(r.total_cost_nusd),
                r.total_cost_nusd,
            ]
        )


@team_page(Action.BILLING_VIEW)
def receipts_csv(request, access: TeamAccess):
    form, qs = _filtered_receipts(request, access)
    response = StreamingHttpResponse(_csv_rows(qs), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="tollgate-receipts-{access.team.slug}-{stamp}.csv"'
    return response


@team_page(Action.BILLING_VIEW)
def receipt_detail(request, access: TeamAccess, receipt_id: str):
    r = get_object_or_404(Receipt.objects.select_related("api_key"), team=access.team, public_id=receipt_id)
    image_job = ImageJob.objects.filter(team=access.team, request_id=r.request_id).first()
    if image_job is not None or r.images or r.image_price_nusd:
        size = f"{image_job.size}{'/' + image_job.quality if image_job.quality else ''}" if image_job else ""
        lines = [(f"Images {size}".strip(), r.images, r.image_price_nusd, r.images * r.image_price_nusd)]
    else:
        lines = [
            ("Prompt tokens", r.prompt_tokens, r.input_price_nusd, r.prompt_tokens * r.input_price_nusd),
            ("Cached prompt tokens", r.cached_tokens, r.cached_price_nusd, r.cached_tokens * r.cached_price_nusd),
            ("Completion tokens", r.completion_tokens, r.output_price_nusd, r.completion_tokens * r.output_price_nusd),
        ]
    ctx = {
        "r": r,
        "lines": lines,
        "line_sum": sum(line[3] for line in lines),
        "per_image": bool(image_job or r.images or r.image_price_nusd),
        "image_job": image_job,
    }
    return page(request, "dashboard/receipt.html", access, "receipts", ctx)


@team_page(Action.USAGE_VIEW)
def usage(request, access: TeamAccess):
    form = UsageRangeForm(request.GET or {"range": "30"})
    if not form.is_valid():
        form_ok = False
        report = None
    else:
        form_ok = True
        d = form.cleaned_data
        report = usage_report(access.team, d["start"], d["end"], d["mode"])
    ctx = {"form": form, "report": report}
    if form_ok:

        def count(v):
            return f"{v:,}"

        ctx.update(
            {
                "spend_chart": charts.bar_chart(report.days, "cost_nusd", usd, title="Spend per day"),
                "requests_chart": charts.bar_chart(report.days, "requests", count, title="Requests per day"),
                "tokens_chart": charts.bar_chart(report.days, "tokens", count, title="Tokens per day"),
                "model_chart": charts.hbar_chart(report.by_model, "cost_nusd", usd, title="Spend by model"),
                "key_chart": charts.hbar_chart(report.by_key, "cost_nusd", usd, title="Spend by key"),
                "can_see_receipts": access.can(Action.BILLING_VIEW),
                "recent": Receipt.objects.filter(team=access.team).select_related("api_key")[:8],
            }
        )
    return page(request, "dashboard/usage.html", access, "usage", ctx, status=200 if form_ok else 400)
