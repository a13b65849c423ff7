"""Events: `emit()` stores what changed in a team, in the transaction of that change, together with one pending
delivery per subscribed endpoint (the outbox); the deliveries are queued once the transaction commits.

So an event for a change that rolled back never exists and is never sent, and a committed change always has its
event and its deliveries, even if the process dies right after the commit (the sweeper in webhooks.tasks picks
up a pending delivery whose task was lost).

    from webhooks.events import emit

    with transaction.atomic():
        job.status = "succeeded"; job.save()
        emit(team_id=job.team_id, type="image.succeeded", data=image_job_json(job))
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from webhooks.models import Delivery, Endpoint, Event

# Every type an endpoint can subscribe to, with what it means (shown in the dashboard and the README).
EVENT_TYPES: dict[str, str] = {
    "image.succeeded": "An image job finished and its images are ready.",
    "image.failed": "An image job failed upstream; it cost nothing.",
    "image.cancelled": "An image job was cancelled before it finished.",
    "image.expired": "An image job was not started in time; it cost nothing.",
    "image.moderation_rejected": "An image job was refused by content moderation.",
    "topup.succeeded": "A top-up (Checkout or auto-recharge) was credited to the balance.",
    "topup.failed": "A top-up did not go through (declined, failed or abandoned).",
    "balance.low": "The balance fell below the team's low-balance threshold (once per crossing).",
    "key.created": "An API key was created.",
    "key.rotated": "An API key got a new secret; the old one works until its grace period ends.",
    "key.revoked": "An API key was revoked.",
    "member.joined": "Someone accepted an invitation and joined the team.",
}
PING = "ping"  # the test event: sent to one endpoint on request, never subscribed to
ALL_TYPES = (*EVENT_TYPES, PING)


def event_body(*, event_id: str, type: str, created: datetime, data: dict[str, Any]) -> str:
    """Stripe's shape. `data` may hold orjson.Fragment values (billing.money.json_number) so amounts are exact."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": type,
            "created": int(created.timestamp()),
            "data": {"object": data},
        },
        option=orjson.OPT_UTC_Z,
    ).decode()


def emit(*, team_id: int, type: str, data: dict[str, Any]) -> Event:
    """Store the event and its pending deliveries; call it inside the transaction of the change it describes."""
    if type not in EVENT_TYPES:
        raise ValueError(f"Unknown event type {type!r}.")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("emit() must be called inside the transaction of the change it describes.")
    endpoints = [e for e in Endpoint.objects.filter(team_id=team_id, enabled=True) if e.subscribes_to(type)]
    return record(team_id=team_id, type=type, data=data, endpoints=endpoints)


def record(*, team_id: int, type: str, data: dict[str, Any], endpoints: list[Endpoint], manual: bool = False) -> Event:
    """The event row and one pending delivery per endpoint, queued after commit (emit and the test ping)."""
    from webhooks import delivery

    now = timezone.now()
    event = Event(team_id=team_id, type=type, created_at=now)
    event.body = event_body(event_id=event.public_id, type=type, created=now, data=data)
    event.save(force_insert=True)
    if endpoints:
        rows = Delivery.objects.bulk_create(
            [Delivery(endpoint=e, event=event, manual=manual, scheduled_at=now) for e in endpoints]
        )
        delivery.queue_on_commit([row.pk for row in rows])
    return event


def event_json(event: Event) -> orjson.Fragment:
    """The stored body as a JSON value for an API response (written as it is, never re-encoded)."""
    return orjson.Fragment(event.body.encode())
