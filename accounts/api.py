"""GET /v1/key: what the calling key is and may do (like OpenRouter's /api/v1/key). Any valid key."""

from __future__ import annotations

from datetime import datetime

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema

from accounts.auth import aauthenticate_request, key_headers
from accounts.models import ApiKey

router = Router(tags=["keys"])


class KeyLimits(Schema):
    allowed_models: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_spend_cap_nusd: int | None
    ip_allowlist: list[str]


class KeyTeam(Schema):
    id: str
    plan: str


class KeyInfo(Schema):
    id: str
    name: str
    label: str
    team: KeyTeam
    mode: str
    scopes: list[str]
    limits: KeyLimits
    expires_at: datetime | None
    grace_ends_at: datetime | None


class KeyInfoResponse(Schema):
    data: KeyInfo


def _row(key_id: int) -> dict:
    return ApiKey.objects.values("expires_at", "ip_allowlist").get(pk=key_id)


@router.get("/key", response=KeyInfoResponse, summary="The calling API key: scopes, effective limits, expiry")
async def current_key(request: HttpRequest, response: HttpResponse):
    ctx = await aauthenticate_request(request, scope="")
    row = await sync_to_async(_row)(ctx.key_id)
    for name, value in key_headers(ctx).items():
        response[name] = value
    return {
        "data": {
            "id": ctx.public_id,
            "name": ctx.name,
            "label": ctx.masked,
            "team": {"id": ctx.team_public_id, "plan": ctx.team_plan},
            "mode": ctx.mode,
            "scopes": sorted(ctx.scopes),
            "limits": {
                "allowed_models": list(ctx.allowed_models),
                "rpm_limit": ctx.rpm_limit,
                "tpm_limit": ctx.tpm_limit,
                "monthly_spend_cap_nusd": ctx.monthly_spend_cap_nusd,
                "ip_allowlist": row["ip_allowlist"],
            },
            "expires_at": row["expires_at"],
            "grace_ends_at": ctx.grace_ends_at,
        }
    }
