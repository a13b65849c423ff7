"""Webhook endpoint rules: who may manage them; create, change, delete, rotate the secret, send a test event,
redeliver. The management API (webhooks.rest) and the dashboard both call these and nothing else writes the rows.

Owners and admins manage endpoints; an API key needs `webhooks:write` and acts with its creator's current role
(a key minted by an operator, with no creator, acts as an admin), exactly like a `keys:write` key. Every change
is audited; a secret is returned to the caller once and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.access import team_for_user
from accounts.auth import KeyContext
from accounts.keys import KeyActor
from accounts.models import Team, User
from accounts.permissions import Action, can
from accounts.services import PermissionDenied, audit
from config import crypto
from webhooks import delivery, events, safety, signing
from webhooks.models import SECRET_PURPOSE, Delivery, Endpoint

MAX_ENDPOINTS = 16
MAX_DESCRIPTION = 300
DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
UPDATABLE = ("url", "events", "description", "enabled")


class WebhookError(Exception):
    """A refused change; `message` is safe to show, `field` names the input it is about."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class NotFound(WebhookError):
    """Missing and "not yours" look the same, so ids cannot be probed."""

    status = 404

    def __init__(self, what: str = "webhook endpoint") -> None:
        super().__init__("not_found", f"No such {what}.")


@dataclass(frozen=True)
class Actor:
    team: Team
    role: str | None
    user: User | None = None  # the person, or the creator of the acting key
    key_label: str = ""  # "api key tg_live_…abcd" when a key acts
    ip: str | None = None

    @classmethod
    def for_user(cls, user: User, team_public_id: str, *, ip: str | None = None) -> Actor:
        access = team_for_user(user, team_public_id)  # Http404 for a team that is not theirs
        return cls(team=access.team, role=access.role, user=user, ip=ip)

    @classmethod
    def for_key(cls, ctx: KeyContext, *, ip: str | None = None) -> Actor:
        keys_actor = KeyActor.for_key(ctx, ip=ip)  # the one rule for a key's role: its creator's, today
        return cls(team=keys_actor.team, role=keys_actor.role, user=keys_actor.user, key_label=keys_actor.label, ip=ip)

    def require_manage(self) -> None:
        if not can(self.role, Action.WEBHOOKS_MANAGE):
            raise PermissionDenied("Only owners and admins can manage webhooks.")

    def audit(self, action: str, target: str, **metadata: Any) -> None:
        audit(
            action,
            team=self.team,
            actor=None if self.key_label else self.user,
            actor_label=self.key_label,
            target=target,
            ip=self.ip,
            **metadata,
        )


@dataclass(frozen=True)
class WithSecret:
    endpoint: Endpoint
    secret: str  # shown once; never stored in plaintext or logged


# --- validation -------------------------------------------------------------------------------------------------


def validate_url(url: Any) -> str:
    try:
        return safety.check(url).url
    except safety.UnsafeURL as exc:
        raise WebhookError(exc.code, exc.message, "url") from None


def validate_events(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise WebhookError("invalid_events", 'events must be a list of event types, or ["*"] for all.', "events")
    chosen = list(dict.fromkeys(v.strip() for v in value))
    if not chosen:
        raise WebhookError("invalid_events", 'Subscribe to at least one event type, or ["*"] for all.', "events")
    if "*" in chosen:
        return ["*"]
    unknown = [v for v in chosen if v not in events.EVENT_TYPES]
    if unknown:
        raise WebhookError(
            "unknown_event_type",
            f"Unknown event type '{unknown[0][:60]}'. Known types: {', '.join(events.EVENT_TYPES)}.",
            "events",
        )
    return chosen


def _validate_description(value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) > MAX_DESCRIPTION:
        raise WebhookError("invalid_description", f"description must be text of up to {MAX_DESCRIPTION} characters.")
    return value.strip()


def _validate_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise WebhookError("invalid_enabled", "enabled must be true or false.", "enabled")
    return value


def validate_grace(grace_seconds: Any) -> timedelta:
    if grace_seconds is None:
        return DEFAULT_GRACE
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
        raise WebhookError("invalid_grace", "grace_seconds must be a whole number of seconds.", "grace_seconds")
    grace = timedelta(seconds=grace_seconds)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise WebhookError("invalid_grace", "grace_seconds must be between 0 and 604800 (7 days).", "grace_seconds")
    return grace


_VALIDATORS = {
    "url": validate_url,
    "events": validate_events,
    "description": _validate_description,
    "enabled": _validate_enabled,
}


# --- queries ------------------------------------------------------------------------------------------------------


def list_endpoints(actor: Actor) -> QuerySet[Endpoint]:
    actor.require_manage()
    return Endpoint.objects.filter(team=actor.team).order_by("created_at", "id")


def get_endpoint(actor: Actor, public_id: str) -> Endpoint:
    endpoint = Endpoint.objects.select_related("team").filter(team=actor.team, public_id=public_id).first()
    if endpoint is None:
        raise NotFound()
    actor.require_manage()
    return endpoint


def team_of_endpoint(user: User, endpoint_public_id: str) -> str:
    """The public id of the team of an endpoint in one of the user's teams, or NotFound."""
    team = (
        Endpoint.objects.filter(public_id=endpoint_public_id, team__memberships__user=user)
        .values_list("team__public_id", flat=True)
        .first()
    )
    if team is None:
        raise NotFound()
    return team


def list_deliveries(endpoint: Endpoint) -> QuerySet[Delivery]:
    return Delivery.objects.filter(endpoint=endpoint).select_related("event").order_by("-id")


def _lock(endpoint: Endpoint) -> Endpoint:
    return Endpoint.objects.select_for_update().select_related("team").get(pk=endpoint.pk)


def _store_secret(endpoint: Endpoint, secret: str) -> None:
    endpoint.secret_encrypted = crypto.encrypt(secret, purpose=SECRET_PURPOSE)
    endpoint.secret_hint = signing.hint(secret)


# --- changes ------------------------------------------------------------------------------------------------------


@transaction.atomic
def create_endpoint(
    *, actor: Actor, url: Any, events: Any = ("*",), description: Any = "", enabled: Any = True
) -> WithSecret:
    actor.require_manage()
    url, chosen, description, enabled = (
        validate_url(url),
        validate_events(events),
        _validate_description(description),
        _validate_enabled(enabled),
    )
    # The team row lock serialises creations, so two at once cannot both pass the limit.
    Team.objects.select_for_update().filter(pk=actor.team.pk).first()
    if Endpoint.objects.filter(team=actor.team).count() >= MAX_ENDPOINTS:
        raise WebhookError(
            "too_many_endpoints", f"A team can have at most {MAX_ENDPOINTS} webhook endpoints; delete one first."
        )
    secret = signing.new_secret()
    endpoint = Endpoint(
        team=actor.team, url=url, events=chosen, description=description, enabled=enabled, created_by=actor.user
    )
    _store_secret(endpoint, secret)
    endpoint.save(force_insert=True)
    actor.audit("webhook.created", endpoint.public_id, url=url, events=chosen, enabled=enabled)
    return WithSecret(endpoint, secret)


@transaction.atomic
def update_endpoint(endpoint: Endpoint, *, actor: Actor, **changes: Any) -> Endpoint:
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise WebhookError("invalid_field", f"These fields cannot be changed: {', '.join(unknown)}.", unknown[0])
    actor.require_manage()
    validated = {name: _VALIDATORS[name](value) for name, value in changes.items()}
    endpoint = _lock(endpoint)
    diff = {
        name: [getattr(endpoint, name), value] for name, value in validated.items() if getattr(endpoint, name) != value
    }
    if not diff:
        return endpoint
    for name, (_, value) in diff.items():
        setattr(endpoint, name, value)
    fields = list(diff)
    if diff.get("enabled", [None, None])[1] is True:  # switched back on: a fresh start
        endpoint.disabled_reason, endpoint.failing_since = "", None
        fields += ["disabled_reason", "failing_since"]
    endpoint.save(update_fields=[*fields, "updated_at"])
    actor.audit("webhook.updated", endpoint.public_id, changes=diff)
    return endpoint


@transaction.atomic
def delete_endpoint(endpoint: Endpoint, *, actor: Actor) -> None:
    actor.require_manage()
    endpoint = _lock(endpoint)
    actor.audit("webhook.deleted", endpoint.public_id, url=endpoint.url)
    endpoint.delete()  # its delivery log goes with it; queued attempts find no row and do nothing


@transaction.atomic
def rotate_secret(endpoint: Endpoint, *, actor: Actor, grace_seconds: Any = None) -> WithSecret:
    """A new secret now; the previous one keeps signing (a second `v1=`) until the grace end. Only one previous
    secret is kept: rotating again ends an earlier grace window at once."""
    grace = validate_grace(grace_seconds)
    actor.require_manage()
    endpoint = _lock(endpoint)
    now = timezone.now()
    if grace:
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = now + grace
    else:
        endpoint.previous_secret_encrypted, endpoint.previous_secret_expires_at = "", None
    secret = signing.new_secret()
    _store_secret(endpoint, secret)
    endpoint.secret_rotated_at = now
    endpoint.save(
        update_fields=[
            "secret_encrypted",
            "secret_hint",
            "previous_secret_encrypted",
            "previous_secret_expires_at",
            "secret_rotated_at",
            "updated_at",
        ]
    )
    actor.audit(
        "webhook.secret_rotated",
        endpoint.public_id,
        grace_seconds=int(grace.total_seconds()),
        previous_secret_expires_at=(
            endpoint.previous_secret_expires_at.isoformat() if endpoint.previous_secret_expires_at else None
        ),
    )
    return WithSecret(endpoint, secret)


@transaction.atomic
def send_test(endpoint: Endpoint, *, actor: Actor) -> Delivery:
    """A `ping` event to this endpoint only (disabled or not), one attempt; the result lands in its log."""
    actor.require_manage()
    endpoint = _lock(endpoint)
    data = {
        "object": "webhook_endpoint",
        "id": endpoint.public_id,
        "url": endpoint.url,
        "message": "A test event from Tollgate. Answer with any 2xx status.",
    }
    event = events.record(team_id=endpoint.team_id, type=events.PING, data=data, endpoints=[endpoint], manual=True)
    actor.audit("webhook.test_sent", endpoint.public_id, event=event.public_id)
    return Delivery.objects.select_related("event").get(event=event, endpoint=endpoint)


@transaction.atomic
def redeliver(endpoint: Endpoint, delivery_public_id: str, *, actor: Actor) -> Delivery:
    """Send the event of one of this endpoint's deliveries again, now, as the next attempt number."""
    actor.require_manage()
    endpoint = _lock(endpoint)
    original = Delivery.objects.filter(endpoint=endpoint, public_id=delivery_public_id).first()
    if original is None:
        raise NotFound("delivery")
    row = Delivery.objects.create(
        endpoint=endpoint,
        event_id=original.event_id,
        attempt=delivery.next_attempt(endpoint.pk, original.event_id),
        manual=True,
    )
    delivery.queue_on_commit([row.pk])
    actor.audit("webhook.redelivered", endpoint.public_id, delivery=original.public_id, attempt=row.attempt)
    return Delivery.objects.select_related("event").get(pk=row.pk)
