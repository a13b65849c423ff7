"""Server-rendered top-up pages: start a Checkout, the success page (waits for the webhook) and cancel.
Thin: parse, call one service in billing.topups, render. (The auto-recharge and credit-code forms are
answered by the dashboard's Billing page, which shows their errors inline.)

A customer never reads Stripe's own error text (it can name internal hosts and ports): they get a plain
message and the request id; the detail goes to the log under that id."""

from __future__ import annotations

import contextlib
import logging

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from accounts.access import SignedInRequest, team_for_user
from accounts.services import PermissionDenied
from billing import topups
from billing.models import TopUp, TopUpStatus
from billing.money import usd
from billing.services import ensure_wallet
from config.net import client_ip_from_request

log = logging.getLogger(__name__)


def _error(request: HttpRequest, message: str, status: int = 400) -> HttpResponse:
    context = {"message": message, "request_id": getattr(request, "request_id", "")}
    return render(request, "billing/topup_error.html", context, status=status)


@login_required
@require_POST
def topup_start(request: SignedInRequest, team_public_id: str) -> HttpResponse:
    access = request.team_access = team_for_user(request.user, team_public_id)  # the error page's sidebar
    try:
        cents = topups.parse_usd_to_cents(request.POST.get("amount_usd", ""))
        url = topups.start_checkout(access.team, cents, request.user, ip=client_ip_from_request(request))
    except PermissionDenied as exc:
        return _error(request, exc.message, status=403)
    except topups.TopUpError as exc:
        if exc.detail:
            log.warning(
                "top-up for team %s failed (request %s): %s", access.team.public_id, request.request_id, exc.detail
            )
        return _error(
            request, exc.message, status=503 if exc.code in ("stripe_not_configured", "stripe_unavailable") else 400
        )
    return HttpResponseRedirect(url, status=303)


@login_required
@require_GET
def topup_success(request: SignedInRequest) -> HttpResponse:
    topup = TopUp.objects.select_related("team").filter(stripe_session_id=request.GET.get("session_id", "")).first()
    if topup is None:
        raise Http404("No such top-up.")
    # 404 when it is not the user's team; the access also gives the page the dashboard's sidebar.
    request.team_access = team_for_user(request.user, topup.team.public_id)
    wallet = ensure_wallet(topup.team)
    context = {
        "topup": topup,
        "team": topup.team,
        "amount": usd(topup.amount_nusd),
        "balance": usd(wallet.balance_nusd),
        "available": usd(wallet.available_nusd),
        "credited": topup.status in (TopUpStatus.PAID, TopUpStatus.PARTIALLY_REFUNDED, TopUpStatus.REFUNDED),
        "pending": topup.status == TopUpStatus.PENDING,
    }
    return render(request, "billing/topup_success.html", context)


@login_required
@require_GET
def topup_cancel(request: SignedInRequest) -> HttpResponse:
    topup = TopUp.objects.select_related("team").filter(public_id=request.GET.get("topup", "")).first()
    if topup is not None:  # only for the sidebar and a link back to Billing; a stranger's id shows no team
        with contextlib.suppress(Http404):
            request.team_access = team_for_user(request.user, topup.team.public_id)
    return render(request, "billing/topup_cancel.html", {})
