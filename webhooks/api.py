"""/v1/events: the team's event log, so a customer can catch up after downtime (Stripe's /v1/events).

Readable with an API key holding `events:read`, or from a logged-in dashboard session (owners, admins and viewers)
naming the team with `?team=team_…`. Newest first, cursor-paginated like /v1/receipts; `ping` test events are
left out unless asked for with `?type=ping`. Bodies are the stored events, byte for byte what was delivered.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import Http404, HttpRequest, HttpResponse
from ninja import Query, Router, Schema

from accounts.access import team_for_user
from accounts.auth import authenticate_request, extract_key, key_headers
from accounts.models import Scope
from accounts.permissions import Action
from config.errors import ApiError
from webhooks.events import ALL_TYPES, PING, event_json
from webhooks.models import Event

router = Router(tags=["events"])


class EventData(Schema):
    object: dict[str, Any]


class EventOut(Schema):
    id: str
    object: str = "event"
    type: str
    created: int
    data: EventData


class EventListOut(Schema):
    object: str = "list"
    data: list[EventOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param)


def _reader(request: HttpRequest, team: str | None) -> tuple[int, dict[str, str]]:
    """The team whose events the caller may read, and headers for the response."""
    user = getattr(request, "user", None)
    if extract_key(request.headers) is not None or user is None or not user.is_authenticated:
        ctx = authenticate_request(request, Scope.EVENTS_READ)  # 401 without a key, 403 without the scope
        if team and team != ctx.team_public_id:
            raise ApiError(404, "not_found", "No such team.", param="team")
        return ctx.team_id, key_headers(ctx)
    if not team:
        raise _bad("team", "From a dashboard session, name the team: ?team=team_….")
    try:
        access = team_for_user(user, team)
    except Http404:
        raise ApiError(404, "not_found", "No such team.", param="team") from None
    if not access.can(Action.EVENTS_VIEW):
        raise ApiError(403, "permission_denied", "Your role in this team does not allow reading its events.")
    return access.team.pk, {}


def _json(value: Any, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(orjson.dumps(value), content_type="application/json")
    for name, header in headers.items():
        response[name] = header
    return response


@router.get("/events", response=EventListOut, summary="List events, newest first")
def list_events(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=100, description="Page size, 1 to 100."),
    after: str | None = Query(None, description="An event id: return the events older than it (the last_id)."),
    type: str | None = Query(None, description="Only events of this type, e.g. topup.succeeded."),
    team: str | None = Query(None, description="The team (team_…), when reading from a dashboard session."),
) -> HttpResponse:
    if type is not None and type not in ALL_TYPES:
        raise _bad("type", f"Unknown event type '{type[:60]}'. Known types: {', '.join(ALL_TYPES)}.")
    if after is not None and not after.startswith("evt_"):
        raise _bad("after", "Invalid value for 'after': expected an event id (evt_…).")
    team_id, headers = _reader(request, team)
    events = Event.objects.filter(team_id=team_id)
    events = events.filter(type=type) if type else events.exclude(type=PING)
    if after is not None:
        cursor = Event.objects.filter(team_id=team_id, public_id=after).values_list("pk", flat=True).first()
        if cursor is None:
            raise _bad("after", f"No event '{after[:60]}' in this team.")
        events = events.filter(pk__lt=cursor)
    rows = list(events.order_by("-pk").only("public_id", "body")[: limit + 1])
    page = rows[:limit]
    return _json(
        {
            "object": "list",
            "data": [event_json(e) for e in page],
            "first_id": page[0].public_id if page else None,
            "last_id": page[-1].public_id if page else None,
            "has_more": len(rows) > limit,
        },
        headers,
    )


@router.get("/events/{event_id}", response=EventOut, summary="One event")
def get_event(request: HttpRequest, event_id: str, team: str | None = Query(None)) -> HttpResponse:
    team_id, headers = _reader(request, team)
    event = Event.objects.filter(team_id=team_id, public_id=event_id).only("body").first()
    if event is None:
        raise ApiError(404, "not_found", f"No event '{event_id[:60]}'.", param="event_id")
    return _json(event_json(event), headers)
