"""The key-management API under /api/v1/: roles, tenancy, keys:write keys, validation, audit."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts import auth
from accounts.keys import mint_key
from accounts.models import ApiKey, AuditLog


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth.clear_cache()
    yield
    auth.clear_cache()


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def as_key(plaintext: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def keys_url(team) -> str:
    return f"/api/v1/teams/{team.public_id}/keys/"


def create(client, team, **body):
    body.setdefault("name", "ci")
    return client.post(keys_url(team), body, content_type="application/json")


def assert_error(response, status: int, code: str, param=None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


# --- sessions and roles ---------------------------------------------------------------------------


def test_an_owner_creates_a_key_and_sees_the_secret_exactly_once(team, owner):
    client = as_user(owner)
    response = create(client, team, name="backend", scopes=["inference"], rpm_limit=30)
    assert response.status_code == 201
    body = response.json()
    assert body["key"].startswith("tg_live_")
    assert body["prefix"] == f"{body['key'][:12]}…{body['key'][-4:]}"
    assert (body["name"], body["scopes"], body["status"], body["created_by"]) == (
        "backend",
        ["inference"],
        "active",
        owner.email,
    )
    assert body["limits"]["rpm_limit"] == 30 and body["limits"]["plan_rpm_limit"] == 60
    assert auth.authenticate(body["key"], client_ip=None, scope="inference").public_id == body["id"]

    detail = client.get(f"/api/v1/keys/{body['id']}/")
    listing = client.get(keys_url(team))
    assert detail.status_code == listing.status_code == 200
    for response in (detail, listing):
        assert body["key"] not in response.content.decode()
        assert "key" not in (response.json() if response is detail else response.json()["results"][0])


def test_the_list_is_paginated(team, owner):
    for n in range(3):
        mint_key(team=team, name=f"k{n}")
    page = as_user(owner).get(keys_url(team), {"limit": 2}).json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"]


def test_a_developer_manages_their_own_keys_but_not_another_members(team, owner, developer):
    client = as_user(developer)
    mine = create(client, team, name="dev key").json()["id"]
    theirs = mint_key(team=team, name="owner key", created_by=owner).key

    assert (
        client.post(f"/api/v1/keys/{mine}/rotate/", {"grace_seconds": 60}, content_type="application/json").status_code
        == 200
    )
    assert (
        client.patch(f"/api/v1/keys/{mine}/", {"name": "renamed"}, content_type="application/json").json()["name"]
        == "renamed"
    )

    assert client.get(f"/api/v1/keys/{theirs.public_id}/").status_code == 200  # developers may look
    assert_error(
        client.post(f"/api/v1/keys/{theirs.public_id}/rotate/", {}, content_type="application/json"),
        403,
        "permission_denied",
    )
    assert_error(client.post(f"/api/v1/keys/{theirs.public_id}/revoke/"), 403, "permission_denied")
    assert_error(
        client.patch(f"/api/v1/keys/{theirs.public_id}/", {"name": "x"}, content_type="application/json"),
        403,
        "permission_denied",
    )
    theirs.refresh_from_db()
    assert theirs.revoked_at is None and theirs.name == "owner key" and theirs.rotated_at is None


def test_an_admin_manages_anyones_keys(team, admin_user, developer):
    devs = mint_key(team=team, name="dev key", created_by=developer).key
    response = as_user(admin_user).post(f"/api/v1/keys/{devs.public_id}/revoke/")
    assert response.status_code == 200 and response.json()["status"] == "revoked"


def test_a_viewer_reads_keys_but_cannot_create_or_change_them(team, viewer):
    key = mint_key(team=team, name="k").key
    client = as_user(viewer)
    assert client.get(keys_url(team)).json()["count"] == 1
    assert_error(create(client, team), 403, "permission_denied")
    assert_error(client.post(f"/api/v1/keys/{key.public_id}/revoke/"), 403, "permission_denied")


def test_the_billing_role_sees_no_keys(team, billing_user):
    key = mint_key(team=team, name="k").key
    client = as_user(billing_user)
    assert_error(client.get(keys_url(team)), 403, "permission_denied")
    assert_error(client.get(f"/api/v1/keys/{key.public_id}/"), 403, "permission_denied")


def test_another_teams_ids_answer_404_not_403(team, owner, outsider, other_team):
    theirs = mint_key(team=other_team, name="evil key", created_by=outsider).key
    client = as_user(owner)
    assert_error(client.get(keys_url(other_team)), 404, "not_found")
    assert_error(create(client, other_team), 404, "not_found")
    for method, path in [("get", ""), ("patch", ""), ("post", "rotate/"), ("post", "revoke/")]:
        response = getattr(client, method)(
            f"/api/v1/keys/{theirs.public_id}/{path}", {}, content_type="application/json"
        )
        assert_error(response, 404, "not_found")
    missing = client.get("/api/v1/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV/")
    assert missing.json()["error"] == client.get(f"/api/v1/keys/{theirs.public_id}/").json()["error"]
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_an_anonymous_request_is_refused(db, team):
    assert_error(Client().get(keys_url(team)), 401, "not_authenticated")


# --- validation ------------------------------------------------------------------------------------


def test_limits_above_the_team_plan_are_refused_with_a_clear_400(team, owner):
    client = as_user(owner)
    error = assert_error(create(client, team, rpm_limit=61), 400, "limit_exceeds_plan", "rpm_limit")
    assert "Starter plan's 60" in error["message"]
    assert_error(create(client, team, tpm_limit=100_001), 400, "limit_exceeds_plan", "tpm_limit")
    key = mint_key(team=team, name="k").key
    assert_error(
        client.patch(f"/api/v1/keys/{key.public_id}/", {"rpm_limit": 1000}, content_type="application/json"),
        400,
        "limit_exceeds_plan",
        "rpm_limit",
    )


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"name": ""}, "invalid_request", "name"),
        ({"scopes": ["root"]}, "invalid_request", "scopes"),
        ({"mode": "prod"}, "invalid_request", "mode"),
        ({"ip_allowlist": ["10.0.0.0/33"]}, "invalid_ip_allowlist", "ip_allowlist"),
        ({"rpm_limit": 0}, "invalid_request", "rpm_limit"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry", "expires_at"),
    ],
)
def test_bad_create_requests_are_refused_with_400(team, owner, body, code, param):
    assert_error(create(as_user(owner), team, **body), 400, code, param)
    assert not ApiKey.objects.filter(team=team).exists()


def test_scopes_cannot_be_changed_after_creation(team, owner):
    key = mint_key(team=team, name="k", scopes=["models:read"]).key
    response = as_user(owner).patch(
        f"/api/v1/keys/{key.public_id}/", {"scopes": ["keys:write"]}, content_type="application/json"
    )
    assert_error(response, 400, "invalid_request", "scopes")


@pytest.mark.parametrize("grace", [-1, 604_801, "soon"])
def test_a_grace_window_outside_zero_to_seven_days_is_refused(team, owner, grace):
    key = mint_key(team=team, name="k").key
    response = as_user(owner).post(
        f"/api/v1/keys/{key.public_id}/rotate/", {"grace_seconds": grace}, content_type="application/json"
    )
    assert_error(response, 400, "invalid_request", "grace_seconds")


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_the_grace_window(team, owner):
    minted = mint_key(team=team, name="k")
    body = (
        as_user(owner).post(f"/api/v1/keys/{minted.key.public_id}/rotate/", {}, content_type="application/json").json()
    )
    assert body["key"] != minted.plaintext and body["status"] == "rotating"
    assert body["grace_ends_at"] is not None
    old = auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    new = auth.authenticate(body["key"], client_ip=None, scope="inference")
    assert old.key_id == new.key_id
    assert (old.grace_ends_at - minted.key.created_at).total_seconds() == pytest.approx(86_400, abs=60)


def test_revocation_through_the_api_takes_effect_immediately(team, owner, client):
    minted = mint_key(team=team, name="k")
    assert client.get("/v1/key", HTTP_X_API_KEY=minted.plaintext).status_code == 200  # now cached
    as_user(owner).post(f"/api/v1/keys/{minted.key.public_id}/revoke/")
    auth.clear_cache()  # in production on_commit drops it; the test transaction never commits
    assert client.get("/v1/key", HTTP_X_API_KEY=minted.plaintext).json()["error"]["code"] == "invalid_api_key"


# --- keys:write keys ---------------------------------------------------------------------------------


def test_a_keys_write_key_manages_its_own_teams_keys(team, owner):
    admin_key = mint_key(team=team, name="automation", scopes=["keys:write", "inference"], created_by=owner)
    client = as_key(admin_key.plaintext)
    assert client.get(keys_url(team)).json()["count"] == 1
    created = create(client, team, name="child", scopes=["inference"])
    assert created.status_code == 201
    child_id = created.json()["id"]
    assert client.post(f"/api/v1/keys/{child_id}/revoke/").status_code == 200
    log = AuditLog.objects.filter(action="key.created", target=created.json()["prefix"]).get()
    assert log.actor_label == f"api key {admin_key.key.masked}"
    assert log.ip == "127.0.0.1"


@pytest.mark.parametrize("actor", ["session", "key"])
def test_a_key_minted_through_either_actor_keeps_the_name_it_was_sent(team, owner, actor):
    """A key minted by a key was once saved as "expires_at": read the name back everywhere it shows."""
    automation = mint_key(team=team, name="automation", scopes=["keys:write", "models:read"], created_by=owner)
    client = as_user(owner) if actor == "session" else as_key(automation.plaintext)
    created = create(client, team, name="readonly-x", scopes=["models:read"], mode="test")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["name"], body["mode"], body["scopes"]) == ("readonly-x", "test", ["models:read"])
    assert client.get(f"/api/v1/keys/{body['id']}/").json()["name"] == "readonly-x"
    assert ApiKey.objects.get(public_id=body["id"]).name == "readonly-x"
    whoami = Client(HTTP_AUTHORIZATION=f"Bearer {body['key']}").get("/v1/key")
    assert whoami.status_code == 200, whoami.content
    assert whoami.json()["data"]["name"] == "readonly-x"


def test_a_keys_write_key_cannot_grant_scopes_it_lacks(team, owner):
    admin_key = mint_key(team=team, name="automation", scopes=["keys:write"], created_by=owner)
    client = as_key(admin_key.plaintext)
    error = assert_error(create(client, team, scopes=["keys:write", "inference"]), 403, "permission_denied")
    assert "inference" in error["message"]
    assert_error(create(client, team), 403, "permission_denied")  # default scopes include inference
    assert ApiKey.objects.filter(team=team).count() == 1
    assert create(client, team, scopes=["keys:write"]).status_code == 201


def test_a_test_key_cannot_mint_a_live_key(team, owner):
    sandbox = mint_key(team=team, name="sandbox", mode="test", scopes=["keys:write"], created_by=owner)
    client = as_key(sandbox.plaintext)
    assert_error(create(client, team, scopes=["keys:write"], mode="live"), 403, "permission_denied")
    assert create(client, team, scopes=["keys:write"], mode="test").json()["key"].startswith("tg_test_")


def test_a_developers_key_has_only_the_developers_reach(team, owner, developer):
    devs = mint_key(team=team, name="dev automation", scopes=["keys:write"], created_by=developer)
    owners = mint_key(team=team, name="owner key", created_by=owner).key
    assert_error(as_key(devs.plaintext).post(f"/api/v1/keys/{owners.public_id}/revoke/"), 403, "permission_denied")


def test_a_key_without_keys_write_is_refused(team):
    plain = mint_key(team=team, name="inference only", scopes=["inference"])
    assert_error(as_key(plain.plaintext).get(keys_url(team)), 403, "insufficient_scope")


def test_a_bad_key_is_refused_even_with_a_session(team, owner):
    client = as_user(owner)
    response = client.get(keys_url(team), HTTP_AUTHORIZATION="Bearer tg_live_nope")
    assert_error(response, 401, "invalid_api_key")


def test_a_key_cannot_reach_another_team(team, owner, other_team, outsider):
    admin_key = mint_key(team=team, name="automation", scopes=["keys:write"], created_by=owner)
    theirs = mint_key(team=other_team, name="evil", created_by=outsider).key
    client = as_key(admin_key.plaintext)
    assert_error(client.get(keys_url(other_team)), 404, "not_found")
    assert_error(client.post(f"/api/v1/keys/{theirs.public_id}/revoke/"), 404, "not_found")


# --- audit and schema ----------------------------------------------------------------------------------


def test_mint_rotate_revoke_and_limit_changes_are_audited(team, owner):
    client = as_user(owner)
    key_id = create(client, team, name="audited").json()["id"]
    client.patch(f"/api/v1/keys/{key_id}/", {"rpm_limit": 5}, content_type="application/json")
    client.post(f"/api/v1/keys/{key_id}/rotate/", {"grace_seconds": 0}, content_type="application/json")
    client.post(f"/api/v1/keys/{key_id}/revoke/")
    logs = list(AuditLog.objects.filter(action__startswith="key.").order_by("id"))
    assert [log.action for log in logs] == ["key.created", "key.updated", "key.rotated", "key.revoked"]
    key = ApiKey.objects.get(public_id=key_id)
    for log in logs:
        assert log.actor == owner and log.ip == "127.0.0.1" and log.metadata["key"] == key_id
        assert log.target.startswith("tg_live_") and "…" in log.target
    assert logs[1].metadata["changes"] == {"rpm_limit": {"old": None, "new": 5}}
    assert logs[-1].target == key.masked


def test_the_openapi_schema_describes_the_key_endpoints(db, client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    for path in [
        "/api/v1/teams/{team_public_id}/keys/",
        "/api/v1/keys/{key_public_id}/rotate/",
        "/api/v1/keys/{key_public_id}/revoke/",
    ]:
        assert path in text
