"""Billing, receipts and usage pages over billing's rows. The Billing page also answers its credit-code and
auto-recharge forms (so their errors show inline); the card top-up form posts to billing.views."""

from __future__ import annotations

import csv
from datetime import datetime, time, timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone

from accounts.access import TeamAccess
from accounts.models import ApiKey
from accounts.permissions import Action
from accounts.services import PermissionDenied
from billing import credit_codes, money, stripe_client, topups
from billing.models import LedgerEntry, LedgerKind, Receipt, ReceiptStatus
from billing.services import ensure_wallet
from config.net import client_ip_from_request as client_ip
from dashboard import charts
from dashboard.common import forbidden, page, team_page
from dashboard.forms import AutoRechargeForm, ReceiptFilterForm, RedeemCodeForm, UsageRangeForm
from dashboard.templatetags.dashboard_tags import usd
from dashboard.usage import default_mode, usage_report
from gateway.models import ImageJob, PriceVersion

PAGE_SIZE = 25


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _billing_page(request, access: TeamAccess, *, redeem_form=None, auto_form=None, auto_saved=False, status=200):
    team = access.team
    wallet = ensure_wallet(team)
    kind = request.GET.get("kind", "")
    entries = LedgerEntry.objects.filter(wallet=wallet)
    if kind in LedgerKind.values:
        entries = entries.filter(kind=kind)
    ledger = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    stripe_on = stripe_client.is_configured()
    card_saved = bool(wallet.stripe_customer_id and wallet.stripe_payment_method_id)
    ctx = {
        "wallet": wallet,
        "ledger": ledger,
        "kind": kind,
        "kinds": LedgerKind.choices,
        "can_manage": access.can(Action.BILLING_MANAGE),
        "stripe_configured": stripe_on,
        "card_payments_off": stripe_client.CARD_PAYMENTS_OFF,
        # Auto-recharge charges a saved card: until there is one to charge, the form explains instead.
        "auto_recharge_ready": stripe_on and card_saved,
        "card_saved": card_saved,
        "recent": Receipt.objects.filter(team=team, is_test=False).select_related("api_key")[:5],
        "redeem_form": redeem_form or RedeemCodeForm(),
        "auto_form": auto_form
        or AutoRechargeForm(
            initial={
                "enabled": wallet.auto_recharge_enabled,
                "threshold_usd": money.exact(wallet.auto_recharge_threshold_nusd),
                "amount_usd": money.exact(wallet.auto_recharge_amount_nusd),
            }
        ),
        "auto_saved": auto_saved,
    }
    return page(request, "dashboard/billing.html", access, "billing", ctx, status=status)


@team_page(Action.BILLING_VIEW)
def billing(request, access: TeamAccess):
    return _billing_page(request, access)


@team_page(Action.BILLING_VIEW, methods=("POST",))
def billing_redeem(request, access: TeamAccess):
    """Redeem a credit code; a refusal is shown under the field, on the same page."""
    if not access.can(Action.BILLING_MANAGE):
        return forbidden(request, access, "Owners, admins and billing members can redeem credit codes.")
    form = RedeemCodeForm(request.POST)
    if not form.is_valid():
        return _billing_page(request, access, redeem_form=form, status=400)
    try:
        redemption = credit_codes.redeem(
            access.team, form.cleaned_data["code"], actor=request.user, ip=client_ip(request)
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except credit_codes.CreditCodeError as exc:
        form.add_error("code", exc.message)
        return _billing_page(request, access, redeem_form=form, status=exc.status)
    entry = redemption.ledger_entry
    messages.success(
        request,
        f"Code redeemed: {money.usd(entry.amount_nusd)} added. Your balance is {money.usd(entry.balance_after_nusd)}.",
    )
    return redirect("dashboard:billing", team_id=access.team.public_id)


@team_page(Action.BILLING_VIEW, methods=("POST",))
def billing_auto_recharge(request, access: TeamAccess):
    """Save auto-recharge settings: errors inline under their fields, "Saved" beside the button."""
    if not access.can(Action.BILLING_MANAGE):
        return forbidden(request, access, "Owners, admins and billing members can change auto-recharge.")
    form = AutoRechargeForm(request.POST)
    if not form.is_valid():
        return _billing_page(request, access, auto_form=form, status=400)
    try:
        topups.update_auto_recharge(access.team, actor=request.user, ip=client_ip(request), **form.cents())
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except topups.TopUpError as exc:
        field = AUTO_RECHARGE_FIELDS.get(exc.code)
        form.add_error(field, exc.message)
        return _billing_page(request, access, auto_form=form, status=400)
    return _billing_page(request, access, auto_saved=True)


AUTO_RECHARGE_FIELDS = {"invalid_threshold": "threshold_usd", "invalid_amount": "amount_usd"}


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
        # the price version the hold was placed under: the unit prices above are its own
        "price_version": PriceVersion.objects.filter(public_id=r.price_version).first() if r.price_version else None,
    }
    return page(request, "dashboard/receipt.html", access, "receipts", ctx)


@team_page(Action.USAGE_VIEW)
def usage(request, access: TeamAccess):
    data = request.GET.copy()
    if not (data.get("range") or data.get("start") or data.get("end")):
        data["range"] = "30"  # so the range picker shows the range the page reports on
    form = UsageRangeForm(data)
    if not form.is_valid():
        form_ok = False
        report = None
    else:
        form_ok = True
        d = form.cleaned_data
        mode = d["mode"] or default_mode(access.team, d["start"], d["end"])
        report = usage_report(access.team, d["start"], d["end"], mode)
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
                "recent": Receipt.objects.filter(team=access.team, is_test=mode == "test").select_related("api_key")[
                    :8
                ],
            }
        )
    return page(request, "dashboard/usage.html", access, "usage", ctx, status=200 if form_ok else 400)
