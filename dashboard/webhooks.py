"""Settings → Webhooks (owners and admins): endpoints, their secrets (shown once), test events, the delivery log
with Redeliver, and the team's low-balance threshold. Each POST validates, then calls one service
(webhooks.services, or billing.events for the threshold) and redirects or re-renders."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import redirect

from accounts.access import TeamAccess
from accounts.permissions import Action
from accounts.services import PermissionDenied
from billing import events as billing_events
from billing.pricing import nusd_to_usd
from billing.services import ensure_wallet
from config.net import client_ip_from_request as client_ip
from dashboard.common import forbidden, page, team_page
from dashboard.forms import EndpointForm, LowBalanceForm, SecretRotateForm
from webhooks import services
from webhooks.models import Delivery, Endpoint

NO_STORE = "no-store, max-age=0"
LOG_PAGE_SIZE = 25
MANAGE = Action.WEBHOOKS_MANAGE


def _actor(request, access: TeamAccess) -> services.Actor:
    return services.Actor(team=access.team, role=access.role, user=request.user, ip=client_ip(request))


def _endpoint(request, access: TeamAccess, endpoint_id: str) -> Endpoint:
    try:
        return services.get_endpoint(_actor(request, access), endpoint_id)
    except services.NotFound:
        raise Http404("No such webhook endpoint.") from None


def _add_error(form, exc: services.WebhookError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


# --- the list ----------------------------------------------------------------------------------------------------


def _list_page(request, access: TeamAccess, *, create_form=None, threshold_form=None, status: int = 200):
    last = Delivery.objects.filter(endpoint=OuterRef("pk")).exclude(status="pending").order_by("-id")
    endpoints = Endpoint.objects.filter(team=access.team).annotate(
        last_status=Subquery(last.values("status")[:1]),
        last_http_status=Subquery(last.values("http_status")[:1]),
        last_at=Subquery(last.values("finished_at")[:1]),
    )
    wallet = ensure_wallet(access.team)
    threshold = wallet.low_balance_threshold_nusd
    ctx = {
        "endpoints": list(endpoints.order_by("created_at", "id")),
        "create_form": create_form or EndpointForm(),
        "open_create": create_form is not None and bool(create_form.errors),
        "threshold_form": threshold_form
        or LowBalanceForm(initial={"threshold_usd": None if threshold is None else nusd_to_usd(threshold)}),
        "wallet": wallet,
        "max_endpoints": services.MAX_ENDPOINTS,
    }
    return page(request, "dashboard/webhooks.html", access, "webhooks", ctx, status=status)


@team_page(MANAGE)
def webhooks(request, access: TeamAccess):
    return _list_page(request, access)


@team_page(MANAGE, methods=("POST",))
def webhook_create(request, access: TeamAccess):
    form = EndpointForm(request.POST)
    if not form.is_valid():
        return _list_page(request, access, create_form=form, status=400)
    try:
        created = services.create_endpoint(actor=_actor(request, access), **form.values())
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except services.WebhookError as exc:
        _add_error(form, exc)
        return _list_page(request, access, create_form=form, status=400)
    return _detail_page(request, access, created.endpoint, secret=created.secret, created=True)


@team_page(MANAGE, methods=("POST",))
def low_balance(request, access: TeamAccess):
    form = LowBalanceForm(request.POST)
    if not form.is_valid():
        return _list_page(request, access, threshold_form=form, status=400)
    try:
        wallet = billing_events.set_low_balance_threshold(
            access.team, actor=request.user, threshold_cents=form.threshold_cents(), ip=client_ip(request)
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except billing_events.AlertError as exc:
        form.add_error("threshold_usd", exc.message)
        return _list_page(request, access, threshold_form=form, status=400)
    if wallet.low_balance_threshold_nusd is None:
        messages.success(request, "The balance.low event is off.")
    else:
        messages.success(request, "Low-balance threshold saved.")
    return redirect("dashboard:webhooks", team_id=access.team.public_id)


# --- one endpoint ------------------------------------------------------------------------------------------------


def _detail_page(
    request, access: TeamAccess, endpoint: Endpoint, *, form=None, secret=None, created=False, status: int = 200
):
    log = Paginator(services.list_deliveries(endpoint), LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {
        "endpoint": endpoint,
        "form": form or EndpointForm.for_endpoint(endpoint),
        "rotate_form": SecretRotateForm(),
        "deliveries": log,
        "grace_ends_at": endpoint.grace_ends_at(),
        "secret": secret,
        "created": created,
    }
    response = page(request, "dashboard/webhook.html", access, "webhooks", ctx, status=status)
    if secret:
        response["Cache-Control"] = NO_STORE  # the plaintext is in this response only
    return response


@team_page(MANAGE, methods=("GET", "POST"))
def webhook_detail(request, access: TeamAccess, endpoint_id: str):
    endpoint = _endpoint(request, access, endpoint_id)
    if request.method == "GET":
        return _detail_page(request, access, endpoint)
    form = EndpointForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, access, endpoint, form=form, status=400)
    try:
        services.update_endpoint(endpoint, actor=_actor(request, access), **form.values())
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except services.WebhookError as exc:
        _add_error(form, exc)
        return _detail_page(request, access, endpoint, form=form, status=400)
    messages.success(request, "Endpoint saved.")
    return redirect("dashboard:webhook", team_id=access.team.public_id, endpoint_id=endpoint.public_id)


@team_page(MANAGE, methods=("POST",))
def webhook_rotate(request, access: TeamAccess, endpoint_id: str):
    endpoint = _endpoint(request, access, endpoint_id)
    form = SecretRotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the old secret keeps signing.")
        return redirect("dashboard:webhook", team_id=access.team.public_id, endpoint_id=endpoint.public_id)
    try:
        rotated = services.rotate_secret(
            endpoint, actor=_actor(request, access), grace_seconds=form.cleaned_data["grace_seconds"]
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    return _detail_page(request, access, rotated.endpoint, secret=rotated.secret)


def _result(row: Delivery) -> str:
    if row.status == "succeeded":
        return f"delivered: HTTP {row.http_status} in {row.latency_ms} ms"
    if row.status == "failed":
        return f"failed: {row.error or f'HTTP {row.http_status}'}"
    return "queued; its result appears in the log below"


@team_page(MANAGE, methods=("POST",))
def webhook_test(request, access: TeamAccess, endpoint_id: str):
    endpoint = _endpoint(request, access, endpoint_id)
    try:
        row = services.send_test(endpoint, actor=_actor(request, access))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    row.refresh_from_db()
    (messages.success if row.status != "failed" else messages.error)(request, f"Test event {_result(row)}.")
    return redirect("dashboard:webhook", team_id=access.team.public_id, endpoint_id=endpoint.public_id)


@team_page(MANAGE, methods=("POST",))
def webhook_redeliver(request, access: TeamAccess, endpoint_id: str, delivery_id: str):
    endpoint = _endpoint(request, access, endpoint_id)
    try:
        row = services.redeliver(endpoint, delivery_id, actor=_actor(request, access))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except services.NotFound:
        raise Http404("No such delivery.") from None
    row.refresh_from_db()
    (messages.success if row.status != "failed" else messages.error)(
        request, f"{row.event.type} {row.event.public_id} redelivered as attempt {row.attempt}, {_result(row)}."
    )
    return redirect("dashboard:webhook", team_id=access.team.public_id, endpoint_id=endpoint.public_id)


@team_page(MANAGE, methods=("POST",))
def webhook_delete(request, access: TeamAccess, endpoint_id: str):
    endpoint = _endpoint(request, access, endpoint_id)
    try:
        services.delete_endpoint(endpoint, actor=_actor(request, access))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    messages.success(request, f"Endpoint {endpoint.url} deleted.")
    return redirect("dashboard:webhooks", team_id=access.team.public_id)
