"""The webhook management API under /api/v1/: owners and admins (session) or a `webhooks:write` key; the secret
shown once; bad input answered 400/404 in the envelope with nothing changed; other teams' ids are 404."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.keys import mint_key
from accounts.models import ApiKey, AuditLog
from tests.accounts.test_rest_keys import as_key, as_user, assert_error
from tests.webhooks.conftest import add_endpoint, verifies
from webhooks.models import Delivery, Endpoint, Event
from webhooks.services import MAX_ENDPOINTS

pytestmark = pytest.mark.django_db
JSON = "application/json"


def team_url(team) -> str:
    return f"/api/v1/teams/{team.public_id}/webhooks/"


def create(client: Client, team, **body):
    return client.post(team_url(team), body, content_type=JSON)


def snapshot(team) -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        list(Endpoint.objects.filter(team=team).order_by("pk").values()),
        Delivery.objects.count(),
        Event.objects.count(),
        AuditLog.objects.filter(action__startswith="webhook.").count(),
    )


@pytest.fixture
def committed_client(owner, django_capture_on_commit_callbacks):
    """The owner's client; its requests' after-commit work (deliveries) runs as in production."""
    client = as_user(owner)

    class Committing:
        def post(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(*args, **kwargs)

    return Committing()


# --- the happy path ----------------------------------------------------------------------------------------------


def test_an_owner_adds_an_endpoint_and_sees_its_secret_exactly_once(team, owner, receiver):
    client = as_user(owner)
    response = create(client, team, url=receiver.url, events=["key.created", "topup.failed"], description="prod")
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 43
    assert body["id"].startswith("we_") and body["object"] == "webhook_endpoint"
    assert (body["url"], body["events"], body["enabled"], body["description"]) == (
        receiver.url,
        ["key.created", "topup.failed"],
        True,
        "prod",
    )
    assert body["secret_hint"] == f"whsec_…{secret[-4:]}"

    listing = client.get(team_url(team))
    detail = client.get(f"/api/v1/webhooks/{body['id']}/")
    assert listing.status_code == detail.status_code == 200
    assert listing.json()["count"] == 1 and listing.json()["results"][0]["id"] == body["id"]
    for later in (listing, detail):
        assert secret not in later.content.decode() and "secret" not in detail.json()
    stored = Endpoint.objects.get(public_id=body["id"])
    assert secret not in stored.secret_encrypted and stored.signing_secrets() == [secret]
    assert AuditLog.objects.filter(action="webhook.created", target=body["id"]).exists()


def test_an_admin_changes_disables_and_deletes_an_endpoint(team, admin_user, owner, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    client = as_user(admin_user)
    url = f"/api/v1/webhooks/{endpoint.public_id}/"

    changed = client.patch(url, {"events": ["balance.low"], "enabled": False, "description": "x"}, content_type=JSON)
    assert changed.status_code == 200, changed.content
    assert (changed.json()["events"], changed.json()["enabled"]) == (["balance.low"], False)
    assert AuditLog.objects.get(action="webhook.updated").metadata["changes"]["enabled"] == [True, False]

    assert client.delete(url).status_code == 204
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()
    assert client.get(url).status_code == 404


def test_rotation_returns_a_new_secret_once_and_keeps_the_old_one_signing_for_the_grace(
    team, owner, receiver, committed_client
):
    endpoint, old = add_endpoint(team, owner, receiver.url)
    response = committed_client.post(
        f"/api/v1/webhooks/{endpoint.public_id}/rotate-secret/", {"grace_seconds": 600}, content_type=JSON
    )
    assert response.status_code == 200, response.content
    new = response.json()["secret"]
    assert new != old and response.json()["grace_ends_at"] is not None

    committed_client.post(f"/api/v1/webhooks/{endpoint.public_id}/test/")
    assert verifies(receiver.requests[-1], new) and verifies(receiver.requests[-1], old)


def test_the_default_grace_is_a_day(team, owner, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    as_user(owner).post(f"/api/v1/webhooks/{endpoint.public_id}/rotate-secret/", {}, content_type=JSON)
    endpoint.refresh_from_db()
    assert round((endpoint.previous_secret_expires_at - endpoint.secret_rotated_at).total_seconds()) == 86_400


def test_a_test_event_and_a_redelivery_through_the_api(team, owner, receiver, committed_client):
    endpoint, secret = add_endpoint(team, owner, receiver.url)
    tested = committed_client.post(f"/api/v1/webhooks/{endpoint.public_id}/test/")
    assert tested.status_code == 202, tested.content
    assert tested.json()["event_type"] == "ping" and tested.json()["endpoint"] == endpoint.public_id

    log = as_user(owner).get(f"/api/v1/webhooks/{endpoint.public_id}/deliveries/")
    assert log.status_code == 200
    [row] = log.json()["results"]
    assert (row["attempt"], row["status"], row["response_body"]) == (1, "succeeded", "ok")
    assert row["latency_ms"] is not None

    again = committed_client.post(f"/api/v1/webhooks/{endpoint.public_id}/deliveries/{row['id']}/redeliver/")
    assert again.status_code == 202, again.content
    assert (again.json()["attempt"], again.json()["manual"], again.json()["event"]) == (2, True, row["event"])
    assert Delivery.objects.get(public_id=again.json()["id"]).status == "succeeded"
    assert [r.header("Tollgate-Event-Id") for r in receiver.requests] == [row["event"], row["event"]]
    assert verifies(receiver.requests[-1], secret)


# --- keys -----------------------------------------------------------------------------------------------------------


def test_a_webhooks_write_key_manages_its_own_teams_endpoints(team, owner, receiver):
    key = mint_key(team=team, name="infra", scopes=["webhooks:write"], created_by=owner)
    response = create(as_key(key.plaintext), team, url=receiver.url)
    assert response.status_code == 201, response.content
    assert AuditLog.objects.get(action="webhook.created").actor_label == f"api key {key.key.masked}"


def test_a_key_without_webhooks_write_is_refused(team, owner, receiver):
    key = mint_key(team=team, name="keys only", scopes=["keys:write", "inference"], created_by=owner)
    before = snapshot(team)
    assert_error(create(as_key(key.plaintext), team, url=receiver.url), 403, "insufficient_scope")
    assert snapshot(team) == before


def test_a_developers_webhooks_write_key_acts_as_the_developer_and_is_refused(team, developer, receiver):
    key = mint_key(team=team, name="dev", scopes=["webhooks:write"], created_by=developer)
    assert_error(create(as_key(key.plaintext), team, url=receiver.url), 403, "permission_denied")
    assert not Endpoint.objects.exists()


def test_a_key_cannot_mint_a_key_with_the_new_scopes_it_lacks(team, owner):
    writer = mint_key(team=team, name="keys", scopes=["keys:write", "webhooks:write"], created_by=owner)
    for scopes in (["events:read"], ["webhooks:write", "events:read"]):
        response = as_key(writer.plaintext).post(
            f"/api/v1/teams/{team.public_id}/keys/", {"name": "child", "scopes": scopes}, content_type=JSON
        )
        assert_error(response, 403, "permission_denied")
    ok = as_key(writer.plaintext).post(
        f"/api/v1/teams/{team.public_id}/keys/", {"name": "child", "scopes": ["webhooks:write"]}, content_type=JSON
    )
    assert ok.status_code == 201 and ok.json()["scopes"] == ["webhooks:write"]
    assert ApiKey.objects.filter(team=team).count() == 2


def test_a_member_can_mint_keys_with_the_new_scopes(team, owner):
    response = as_user(owner).post(
        f"/api/v1/teams/{team.public_id}/keys/",
        {"name": "reader", "scopes": ["events:read", "webhooks:write"]},
        content_type=JSON,
    )
    assert response.status_code == 201 and response.json()["scopes"] == ["events:read", "webhooks:write"]


# --- who may -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["developer", "viewer", "billing_user"])
def test_members_other_than_owners_and_admins_cannot_manage_webhooks(request, team, owner, receiver, who):
    person = request.getfixturevalue(who)
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    client = as_user(person)
    before = snapshot(team)
    assert_error(create(client, team, url=receiver.url), 403, "permission_denied")
    assert_error(client.get(team_url(team)), 403, "permission_denied")
    assert_error(client.post(f"/api/v1/webhooks/{endpoint.public_id}/rotate-secret/"), 403, "permission_denied")
    assert snapshot(team) == before


def test_an_outsider_gets_404_for_acmes_team_and_endpoint_ids(team, owner, outsider, other_team, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    first = Delivery.objects.create(endpoint=endpoint, event=Event.objects.create(team=team, type="ping", body="{}"))
    client = as_user(outsider)
    before = snapshot(team)
    assert_error(client.get(team_url(team)), 404, "not_found")
    assert_error(create(client, team, url=receiver.url), 404, "not_found")
    base = f"/api/v1/webhooks/{endpoint.public_id}/"
    assert_error(client.get(base), 404, "not_found")
    assert_error(client.patch(base, {"enabled": False}, content_type=JSON), 404, "not_found")
    assert_error(client.delete(base), 404, "not_found")
    assert_error(client.post(base + "rotate-secret/"), 404, "not_found")
    assert_error(client.get(base + "deliveries/"), 404, "not_found")
    assert_error(client.post(base + f"deliveries/{first.public_id}/redeliver/"), 404, "not_found")
    assert_error(client.post(base + "test/"), 404, "not_found")
    assert snapshot(team) == before


def test_an_outsiders_key_gets_404_for_acmes_ids(team, owner, outsider, other_team, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    theirs = mint_key(team=other_team, name="evil", scopes=["webhooks:write"], created_by=outsider)
    client = as_key(theirs.plaintext)
    assert_error(client.get(team_url(team)), 404, "not_found")
    assert_error(client.get(f"/api/v1/webhooks/{endpoint.public_id}/"), 404, "not_found")
    assert_error(client.delete(f"/api/v1/webhooks/{endpoint.public_id}/"), 404, "not_found")
    assert Endpoint.objects.filter(pk=endpoint.pk).exists()


def test_a_delivery_of_another_endpoint_cannot_be_redelivered_through_this_one(team, owner, receiver):
    mine, _ = add_endpoint(team, owner, receiver.url)
    other, _ = add_endpoint(team, owner, receiver.url + "/2")
    theirs = Delivery.objects.create(endpoint=other, event=Event.objects.create(team=team, type="ping", body="{}"))
    before = snapshot(team)
    response = as_user(owner).post(f"/api/v1/webhooks/{mine.public_id}/deliveries/{theirs.public_id}/redeliver/")
    assert_error(response, 404, "not_found")
    assert snapshot(team) == before


# --- bad input --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"url": "http://hooks.example.com/x"}, "https_required", "url"),
        ({"url": "ftp://hooks.example.com/x"}, "invalid_url", "url"),
        ({"url": "not a url"}, "invalid_url", "url"),
        ({"url": "https://user:pw@hooks.example.com/"}, "invalid_url", "url"),
        ({"url": "https://127.0.0.1/hook"}, "forbidden_address", "url"),
        ({"url": "https://hooks.example.com/x", "events": ["key.exploded"]}, "unknown_event_type", "events"),
        ({"url": "https://hooks.example.com/x", "events": []}, "invalid_events", "events"),
        ({"url": "https://hooks.example.com/x", "events": "key.created"}, "invalid_request", "events"),
        ({"url": "https://hooks.example.com/x", "enabled": "maybe"}, "invalid_request", "enabled"),
        ({"events": ["*"]}, "invalid_request", "url"),
    ],
)
def test_bad_input_on_create_is_a_400_and_changes_nothing(team, owner, settings, dns, body, code, param):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    dns["hooks.example.com"] = ["93.184.216.34"]
    before = snapshot(team)
    assert_error(create(as_user(owner), team, **body), 400, code, param=param)
    assert snapshot(team) == before


def test_a_seventeenth_endpoint_is_refused(team, owner, receiver):
    for n in range(MAX_ENDPOINTS):
        add_endpoint(team, owner, f"{receiver.url}/{n}")
    before = snapshot(team)
    assert_error(create(as_user(owner), team, url=receiver.url), 400, "too_many_endpoints")
    assert snapshot(team) == before


@pytest.mark.parametrize("grace", [-1, 604_801, "soon", 1.5, True, None])
def test_a_malformed_grace_is_a_400_and_keeps_the_secret(team, owner, receiver, grace):
    endpoint, secret = add_endpoint(team, owner, receiver.url)
    before = snapshot(team)
    response = as_user(owner).post(
        f"/api/v1/webhooks/{endpoint.public_id}/rotate-secret/", {"grace_seconds": grace}, content_type=JSON
    )
    assert_error(response, 400, "invalid_request", param="grace_seconds")
    assert snapshot(team) == before
    assert Endpoint.objects.get(pk=endpoint.pk).signing_secrets() == [secret]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"secret": "whsec_mine"}, "secret"),
        ({"url": "http://hooks.example.com/x"}, "url"),
        ({"events": ["nope"]}, "events"),
        ({"enabled": "perhaps"}, "enabled"),
    ],
)
def test_a_bad_change_is_a_400_and_changes_nothing(team, owner, receiver, settings, body, param):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    before = snapshot(team)
    response = as_user(owner).patch(f"/api/v1/webhooks/{endpoint.public_id}/", body, content_type=JSON)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.content
    assert snapshot(team) == before


def test_an_unknown_endpoint_id_is_a_404_in_the_envelope(team, owner):
    response = as_user(owner).get("/api/v1/webhooks/we_01NOPE/")
    assert_error(response, 404, "not_found")
    assert response.json()["request_id"]


def test_the_schema_documents_the_webhook_api(owner):
    schema = as_user(owner).get("/api/v1/schema/").content.decode()
    assert "/api/v1/webhooks/{endpoint_public_id}/rotate-secret/" in schema and "WebhooksKeyAuth" in schema
