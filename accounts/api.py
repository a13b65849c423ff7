"""API-key security for the ninja /v1 routes of every app, and GET /v1/key: what the calling key is and may do
(like OpenRouter's /api/v1/key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from ninja.security.base import AuthBase

from accounts.auth import KeyContext, aauthenticate, authenticate, extract_key, key_headers
from accounts.models import ApiKey
from config.db import run_db
from config.net import client_ip_from_request

router = Router(tags=["keys"])


class KeyAuth(AuthBase):
    """Bearer API key (or X-Api-Key) holding `scope` ("" = any valid key), for a sync operation; errors in
    OpenAI's envelope (config/api.py). Declared as HTTP bearer security in the OpenAPI document."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def __call__(self, request: HttpRequest) -> KeyContext:
        return authenticate(extract_key(request.headers), client_ip=client_ip_from_request(request), scope=self.scope)


class AsyncKeyAuth(KeyAuth):
    """KeyAuth for an async operation."""

    async def __call__(self, request: HttpRequest) -> KeyContext:  # type: ignore[override]
        return await aauthenticate(
            extract_key(request.headers), client_ip=client_ip_from_request(request), scope=self.scope
        )


class KeyLimits(Schema):
    allowed_models: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_spend_cap_nusd: int | None
    ip_allowlist: list[str]
    max_cost_per_request_nusd: int | None  # the cap of a request that sends no Tollgate-Max-Cost
    project: str | None  # its project (proj_…), whose monthly budget applies too
    project_monthly_budget_nusd: int | None


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


def _row(key_id: int) -> dict[str, Any]:
    return dict(ApiKey.objects.values("expires_at", "ip_allowlist", "project__public_id").get(pk=key_id))


@router.get(
    "/key",
    auth=AsyncKeyAuth(""),
    response=KeyInfoResponse,
    summary="The calling API key: scopes, effective limits, expiry",
)
async def current_key(request: HttpRequest, response: HttpResponse):
    ctx: KeyContext = request.auth  # type: ignore[attr-defined]
    row = await run_db(_row, ctx.key_id)
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
                "max_cost_per_request_nusd": ctx.max_cost_per_request_nusd,
                "project": row["project__public_id"],
                "project_monthly_budget_nusd": ctx.project_budget_nusd,
            },
            "expires_at": row["expires_at"],
            "grace_ends_at": ctx.grace_ends_at,
        }
    }
