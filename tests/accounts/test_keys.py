"""Key services (mint, rotate, revoke, limits), create_team keys, the admin, and no plaintext anywhere."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import models
from django.test import Client
from django.utils import timezone

from accounts import auth, keyformat
from accounts.keys import KeyActor, KeyFieldError, create_key, mint_key, revoke_key, rotate_key, update_key_limits
from accounts.models import ApiKey, AuditLog, User
from accounts.services import AccountsError


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth.clear_cache()
    yield
    auth.clear_cache()


def test_minting_stores_only_a_keyed_hash_and_a_display_prefix(team, owner):
    minted = mint_key(team=team, name="ci", created_by=owner)
    key = ApiKey.objects.get(pk=minted.key.pk)
    assert keyformat.parse_mode(minted.plaintext) == "live"
    assert key.secret_hash == keyformat.lookup_hash(minted.plaintext) != minted.plaintext
    assert key.masked == f"{minted.plaintext[:12]}…{minted.plaintext[-4:]}"
    assert key.status() == "active"


def test_rotating_twice_ends_the_earlier_grace_window(team, owner):
    actor = KeyActor.for_user(owner, team)
    first = mint_key(team=team, name="ci")
    second = rotate_key(first.key, actor=actor, grace_seconds=3600)
    third = rotate_key(second.key, actor=actor, grace_seconds=3600)
    with pytest.raises(Exception) as info:
        auth.authenticate(first.plaintext, client_ip=None, scope="inference")
    assert info.value.code == "invalid_api_key"
    assert auth.authenticate(second.plaintext, client_ip=None, scope="inference").grace_ends_at is not None
    assert auth.authenticate(third.plaintext, client_ip=None, scope="inference").grace_ends_at is None


def test_a_revoked_key_cannot_be_rotated_or_changed(team, owner):
    actor = KeyActor.for_user(owner, team)
    minted = mint_key(team=team, name="ci")
    revoke_key(minted.key, actor=actor)
    with pytest.raises(AccountsError) as info:
        rotate_key(minted.key, actor=actor)
    assert info.value.code == "key_revoked"
    with pytest.raises(AccountsError):
        update_key_limits(minted.key, actor=actor, rpm_limit=5)


def test_revoking_twice_writes_one_audit_row(team, owner):
    actor = KeyActor.for_user(owner, team)
    minted = mint_key(team=team, name="ci")
    revoke_key(minted.key, actor=actor)
    revoke_key(minted.key, actor=actor)
    assert AuditLog.objects.filter(action="key.revoked").count() == 1


def test_key_limits_never_exceed_the_plan_but_enterprise_has_no_ceiling(team, owner):
    actor = KeyActor.for_user(owner, team)
    with pytest.raises(KeyFieldError) as info:
        create_key(actor, name="greedy", tpm_limit=10**7)
    assert (info.value.code, info.value.field) == ("limit_exceeds_plan", "tpm_limit")
    team.plan = "enterprise"
    team.save()
    key = create_key(KeyActor.for_user(owner, team), name="big", rpm_limit=10**6).key
    assert key.rpm_limit == 10**6


def test_ip_allow_list_entries_are_normalised(team):
    key = mint_key(team=team, name="ci", ip_allowlist=["10.1.2.3/8", "2001:DB8::1", "10.0.0.0/8"]).key
    assert key.ip_allowlist == ["10.0.0.0/8", "2001:db8::1/128"]


def test_update_changes_only_what_differs_and_audits_it(team, owner):
    minted = mint_key(team=team, name="ci")
    update_key_limits(
        minted.key,
        actor=KeyActor.for_user(owner, team, ip="2001:db8::7"),
        name="ci",
        allowed_models=["demo-chat"],
        expires_at=timezone.now() + timedelta(days=1),
    )
    log = AuditLog.objects.get(action="key.updated")
    assert set(log.metadata["changes"]) == {"allowed_models", "expires_at"}
    assert log.ip == "2001:db8::7"


def test_create_team_mints_working_live_and_test_keys(db):
    out = StringIO()
    call_command(
        "create_team",
        "demo",
        "--owner",
        "demo@example.test",
        "--key",
        "prod",
        "--test-key",
        "sandbox",
        "--scopes",
        "inference,keys:write",
        "--json",
        stdout=out,
    )
    result = json.loads(out.getvalue())
    modes = {k["mode"]: k for k in result["keys"]}
    assert set(modes) == {"live", "test"}
    for mode, entry in modes.items():
        ctx = auth.authenticate(entry["key"], client_ip=None, scope="keys:write")
        assert ctx.mode == mode and ctx.team_public_id == result["team"]["id"]
        assert ctx.scopes == {"inference", "keys:write"}


# --- the Django admin ---------------------------------------------------------------------------------


@pytest.fixture
def staff_client(db) -> Client:
    staff = User.objects.create_superuser(email="ops@tollgate.test", password="correct-horse-battery")
    client = Client()
    client.force_login(staff)
    return client


def test_the_admin_lists_keys_by_prefix_and_never_shows_a_secret(team, staff_client):
    minted = mint_key(team=team, name="ci")
    minted.key.refresh_from_db()
    changelist = staff_client.get("/admin/accounts/apikey/", {"q": minted.key.last4})
    change = staff_client.get(f"/admin/accounts/apikey/{minted.key.pk}/change/")
    assert changelist.status_code == change.status_code == 200
    assert minted.key.masked in changelist.content.decode()
    for page in (changelist, change):
        html = page.content.decode()
        assert minted.plaintext not in html
        assert minted.key.secret_hash not in html
    assert staff_client.get("/admin/accounts/apikey/", {"status": "active"}).status_code == 200


def test_the_admin_revokes_selected_keys(team, staff_client):
    a, b = mint_key(team=team, name="a").key, mint_key(team=team, name="b").key
    response = staff_client.post(
        "/admin/accounts/apikey/", {"action": "revoke_selected", "_selected_action": [a.pk, b.pk]}, follow=True
    )
    assert "Revoked 2 key(s)." in response.content.decode()
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert AuditLog.objects.filter(action="key.revoked", actor_label="admin ops@tollgate.test").count() == 2


# --- no plaintext anywhere -----------------------------------------------------------------------------


def _text_columns(model) -> list[str]:
    return [
        f.attname
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
    ]


def test_no_plaintext_secret_reaches_any_table_or_log(team, owner, caplog):
    caplog.set_level(logging.DEBUG)
    owner_client = Client()
    owner_client.force_login(owner)
    secrets = []
    created = owner_client.post(
        f"/api/v1/teams/{team.public_id}/keys/",
        {"name": "api", "scopes": ["keys:write"]},
        content_type="application/json",
    ).json()
    secrets.append(created["key"])
    secrets.append(mint_key(team=team, name="direct", mode="test").plaintext)
    via_key = Client(HTTP_AUTHORIZATION=f"Bearer {created['key']}")
    child = via_key.post(
        f"/api/v1/teams/{team.public_id}/keys/",
        {"name": "child", "scopes": ["keys:write"]},
        content_type="application/json",
    ).json()
    secrets.append(child["key"])
    rotated = owner_client.post(
        f"/api/v1/keys/{child['id']}/rotate/", {"grace_seconds": 60}, content_type="application/json"
    ).json()
    secrets.append(rotated["key"])
    for secret in secrets:
        auth.clear_cache()
        assert Client().get("/v1/key", HTTP_X_API_KEY=secret).status_code == 200
    Client().get("/v1/key", HTTP_AUTHORIZATION=f"Bearer {secrets[0][:-1]}x")  # a mistyped one, logged or not

    needles = secrets + [s[8:-6] for s in secrets]  # also the random body alone
    for model in apps.get_models():
        columns = _text_columns(model)
        if not columns:
            continue
        for row in model._default_manager.values_list(*columns):
            text = json.dumps(row, default=str)
            for needle in needles:
                assert needle not in text, f"{model.__name__} stores a plaintext key"
    log_text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for needle in needles:
        assert needle not in log_text
    assert AuditLog.objects.filter(action__in=["key.created", "key.rotated"]).count() == 4
