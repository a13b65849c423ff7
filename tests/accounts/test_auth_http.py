"""GET /v1/key over HTTP, the /v1 error envelope for unknown routes, and X-Request-Id everywhere."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import auth
from accounts.keys import mint_key

REQUEST_ID = re.compile(r"^req_[0-9A-Z]{26}$")


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth.clear_cache()
    yield
    auth.clear_cache()


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert REQUEST_ID.match(body["request_id"])
    assert body["request_id"] == response["X-Request-Id"]
    return body


def test_the_key_endpoint_describes_the_calling_key(team, client):
    expires = timezone.now() + timedelta(days=30)
    minted = mint_key(
        team=team,
        name="ci bot",
        scopes=["models:read"],
        rpm_limit=30,
        allowed_models=["demo-chat"],
        ip_allowlist=["127.0.0.0/8"],
        expires_at=expires,
    )
    response = client.get("/v1/key", HTTP_X_API_KEY=minted.plaintext)
    assert response.status_code == 200
    assert REQUEST_ID.match(response["X-Request-Id"])
    assert "X-Tollgate-Key-Grace-Ends-At" not in response
    data = response.json()["data"]
    assert data["id"] == minted.key.public_id
    assert data["name"] == "ci bot"
    assert data["label"] == minted.key.masked
    assert data["team"] == {"id": team.public_id, "plan": "starter"}
    assert data["mode"] == "live"
    assert data["scopes"] == ["models:read"]
    assert data["limits"] == {
        "allowed_models": ["demo-chat"],
        "rpm_limit": 30,
        "tpm_limit": 100_000,
        "monthly_spend_cap_nusd": None,
        "ip_allowlist": ["127.0.0.0/8"],
        "max_cost_per_request_nusd": None,
        "project": None,
        "project_monthly_budget_nusd": None,
    }
    assert data["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))
    assert data["grace_ends_at"] is None
    assert minted.plaintext not in response.content.decode()


@pytest.mark.parametrize(
    ("headers", "code", "status"),
    [
        ({}, "invalid_api_key", 401),
        ({"HTTP_AUTHORIZATION": "Bearer tg_live_short"}, "invalid_api_key", 401),
    ],
)
def test_the_key_endpoint_refuses_bad_keys_in_the_envelope(db, client, headers, code, status):
    assert_envelope(client.get("/v1/key", **headers), status, code)


def test_the_key_endpoint_refuses_an_address_outside_the_allow_list(team, client):
    minted = mint_key(team=team, name="ci", ip_allowlist=["2001:db8::/32"])
    body = assert_envelope(
        client.get("/v1/key", HTTP_AUTHORIZATION=f"Bearer {minted.plaintext}"), 403, "ip_not_allowed"
    )
    assert body["error"]["type"] == "permission_error"


def test_an_expired_key_gets_key_expired_over_http(team, client):
    minted = mint_key(team=team, name="ci", expires_at=timezone.now() + timedelta(seconds=30))
    import time_machine

    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        assert_envelope(client.get("/v1/key", HTTP_AUTHORIZATION=f"Bearer {minted.plaintext}"), 401, "key_expired")


def test_unknown_v1_paths_answer_404_in_the_envelope(db, client):
    assert_envelope(client.get("/v1/no/such/route"), 404, "not_found")


def test_a_wrong_method_on_a_v1_route_answers_405_in_the_envelope(db, client):
    assert_envelope(client.delete("/v1/key"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/v1/key", "/api/v1/schema/", "/healthz", "/admin/login/"])
def test_every_response_carries_a_request_id(db, client, path):
    response = client.get(path)
    assert REQUEST_ID.match(response["X-Request-Id"]), path


def test_request_ids_differ_between_requests(db, client):
    assert client.get("/healthz")["X-Request-Id"] != client.get("/healthz")["X-Request-Id"]
