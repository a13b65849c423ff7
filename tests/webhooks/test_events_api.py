"""GET /v1/events and /v1/events/{id}: catch up after downtime with an `events:read` key or from a dashboard
session; cursor pagination and ?type=; OpenAI's error envelope; nobody reads another team's events."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from accounts.keys import mint_key
from tests.accounts.test_rest_keys import as_user
from webhooks.events import PING, record
from webhooks.events import emit as emit_event
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def emit(team, type: str, **data) -> Event:
    with transaction.atomic():
        return emit_event(team_id=team.pk, type=type, data={"object": "test", **data})


@pytest.fixture
def reader(team, owner):
    return Client(HTTP_AUTHORIZATION=f"Bearer {mint_key(team=team, name='r', scopes=['events:read']).plaintext}")


def assert_envelope(response, status: int, code: str, param=None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "request_id"} and body["request_id"].startswith("req_")
    assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


def test_a_key_with_events_read_lists_the_teams_events_newest_first_and_pages_through_them(team, reader):
    made = [emit(team, "topup.succeeded", n=n) for n in range(5)]
    ids = [e.public_id for e in reversed(made)]

    first = reader.get("/v1/events", {"limit": 2, "type": "topup.succeeded"}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [e["id"] for e in first["data"]] == ids[:2] and first["last_id"] == ids[1]
    second = reader.get("/v1/events", {"limit": 2, "type": "topup.succeeded", "after": first["last_id"]}).json()
    third = reader.get("/v1/events", {"limit": 2, "type": "topup.succeeded", "after": second["last_id"]}).json()
    assert [e["id"] for e in second["data"] + third["data"]] == ids[2:]
    assert third["has_more"] is False
    event = first["data"][0]
    assert set(event) == {"id", "object", "type", "created", "data"}
    assert event["data"]["object"] == {"object": "test", "n": 4}


def test_the_type_filter_and_ping_events(team, reader):
    emit(team, "balance.low")
    emit(team, "topup.failed")
    with transaction.atomic():
        record(team_id=team.pk, type=PING, data={"object": "webhook_endpoint"}, endpoints=[])
    listed = reader.get("/v1/events").json()["data"]
    key_events = [e["type"] for e in listed if e["type"].startswith("key.")]
    assert [e["type"] for e in listed if not e["type"].startswith("key.")] == ["topup.failed", "balance.low"]
    assert key_events == ["key.created"]  # the reader key's own creation
    assert [e["type"] for e in reader.get("/v1/events", {"type": "balance.low"}).json()["data"]] == ["balance.low"]
    assert [e["type"] for e in reader.get("/v1/events", {"type": "ping"}).json()["data"]] == ["ping"]


def test_one_event_by_id_and_another_teams_is_404(team, other_team, reader):
    mine = emit(team, "balance.low")
    theirs = emit(other_team, "balance.low")
    response = reader.get(f"/v1/events/{mine.public_id}")
    assert response.status_code == 200 and response.json()["id"] == mine.public_id
    assert response.content == mine.body.encode()
    assert_envelope(reader.get(f"/v1/events/{theirs.public_id}"), 404, "not_found", param="event_id")
    assert_envelope(reader.get("/v1/events/evt_nope"), 404, "not_found")
    assert theirs.public_id not in reader.get("/v1/events").content.decode()


def test_another_teams_events_are_never_listed(team, other_team, outsider, reader):
    emit(other_team, "topup.succeeded")
    theirs = Client(
        HTTP_AUTHORIZATION=f"Bearer {mint_key(team=other_team, name='x', scopes=['events:read']).plaintext}"
    )
    assert [e["type"] for e in reader.get("/v1/events").json()["data"]] == ["key.created"]
    assert "topup.succeeded" in [e["type"] for e in theirs.get("/v1/events").json()["data"]]
    assert_envelope(reader.get("/v1/events", {"team": other_team.public_id}), 404, "not_found", param="team")


def test_a_key_without_events_read_is_403_and_no_key_is_401(team):
    other = Client(HTTP_AUTHORIZATION=f"Bearer {mint_key(team=team, name='inference').plaintext}")
    assert_envelope(other.get("/v1/events"), 403, "insufficient_scope")
    assert_envelope(Client().get("/v1/events"), 401, "invalid_api_key")
    assert_envelope(Client().get("/v1/events/evt_x"), 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"type": "key.exploded"}, "type"),
        ({"after": "rcpt_1"}, "after"),
        ({"after": "evt_nope"}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
    ],
)
def test_bad_queries_are_400_in_openais_envelope(reader, query, param):
    error = assert_envelope(reader.get("/v1/events", query), 400, "invalid_request_error", param=param)
    assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("owner", 200),
        ("admin_user", 200),
        ("viewer", 200),
        ("developer", 403),
        ("billing_user", 403),
        ("outsider", 404),
    ],
)
def test_a_dashboard_session_reads_its_teams_events_by_role(request, team, who, status):
    emit(team, "balance.low")
    client = as_user(request.getfixturevalue(who))
    response = client.get("/v1/events", {"team": team.public_id})
    assert response.status_code == status, response.content
    if status == 200:
        assert [e["type"] for e in response.json()["data"]] == ["balance.low"]
        event_id = response.json()["data"][0]["id"]
        assert client.get(f"/v1/events/{event_id}", {"team": team.public_id}).status_code == 200


def test_a_session_must_name_the_team(owner, team):
    assert_envelope(as_user(owner).get("/v1/events"), 400, "invalid_request_error", param="team")
