"""The Playground: a member picks a model and streams a chat in the browser through the public /v1 API, paid from
the team's wallet like any request (or free in test mode).

static/js/playground.js does the talking to /v1. These views render the page, issue its short-lived,
session-bound credential (accounts/playground.py: never an API key, never in the page source) and report the
receipt of one of the member's own Playground requests (how the page shows a stopped stream's `partial` one).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone

from accounts import playground as credentials
from accounts.access import TeamAccess
from accounts.permissions import Action
from accounts.services import AccountsError, PermissionDenied
from billing import money
from billing.models import Receipt
from config.net import client_ip_from_request as client_ip
from dashboard import catalog
from dashboard.common import page, team_page
from gateway.scenarios import HEADER as SCENARIO_HEADER
from gateway.scenarios import Scenario

NO_STORE = "no-store, max-age=0"
DEFAULT_MAX_TOKENS = 512


def _json(body: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = NO_STORE
    return response


@team_page(Action.PLAYGROUND_USE)
def playground(request, access: TeamAccess):
    team = access.team
    models = [m for m in catalog.price_rows() if m.kind == "chat"]
    ctx = {
        "models": models,
        "default_max_tokens": DEFAULT_MAX_TOKENS,
        "scenarios": [s.value for s in Scenario],
        "scenario_header": SCENARIO_HEADER,
        "wallet": getattr(team, "wallet", None) if access.can(Action.BILLING_VIEW) else None,
    }
    return page(request, "dashboard/playground.html", access, "playground", ctx)


@team_page(Action.PLAYGROUND_USE, methods=("POST",))
def playground_token(request, access: TeamAccess):
    try:
        minted = credentials.mint(
            user=request.user,
            team=access.team,
            session=request.session,
            mode=request.POST.get("mode", ""),
            ip=client_ip(request),
        )
    except PermissionDenied as exc:
        return _json({"error": exc.message}, status=403)
    except AccountsError as exc:
        return _json({"error": exc.message}, status=400)
    return _json(
        {
            "token": minted.plaintext,
            "mode": minted.mode,
            "expires_at": minted.expires_at.isoformat(),
            "expires_in": int((minted.expires_at - timezone.now()).total_seconds()),
        }
    )


@team_page(Action.PLAYGROUND_USE)
def playground_receipt(request, access: TeamAccess, request_id: str):
    """The receipt of one of this member's own Playground requests, by its X-Request-Id; 404 until it is written."""
    receipt = Receipt.objects.filter(
        team=access.team, request_id=request_id, api_key=None, key_label=credentials.label_for(request.user)[:60]
    ).first()
    if receipt is None:
        return _json({"error": "No receipt for this request yet."}, status=404)
    url = ""
    if access.can(Action.BILLING_VIEW):
        url = reverse("dashboard:receipt", kwargs={"team_id": access.team.public_id, "receipt_id": receipt.public_id})
    return _json(
        {
            "id": receipt.public_id,
            "status": receipt.status,
            "is_test": receipt.is_test,
            "error_code": receipt.error_code,
            "prompt_tokens": receipt.prompt_tokens + receipt.cached_tokens,
            "completion_tokens": receipt.completion_tokens,
            "total_tokens": receipt.total_tokens,
            "cost": money.usd(receipt.total_cost_nusd),
            "latency_ms": receipt.latency_ms,
            "ttft_ms": receipt.ttft_ms,
            "url": url,
        }
    )
