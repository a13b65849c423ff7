"""Events for changes in accounts (keys, members), which announces them with signals sent inside the change's
transaction (accounts sits below webhooks and never imports it). A failure here rolls the change back with it."""

from __future__ import annotations

from typing import Any

from accounts import signals
from accounts.models import ApiKey, Membership
from webhooks.events import emit


def key_json(key: ApiKey) -> dict[str, Any]:
    """What an event says about a key: never its secret nor its hash."""
    return {
        "id": key.public_id,
        "object": "api_key",
        "name": key.name,
        "prefix": key.masked,
        "mode": key.mode,
        "scopes": list(key.scopes),
        "status": key.status(),
        "created_at": key.created_at,
        "created_by": key.created_by.email if key.created_by else None,
        "expires_at": key.expires_at,
        "rotated_at": key.rotated_at,
        "revoked_at": key.revoked_at,
    }


def _key_created(sender, key: ApiKey, **kwargs) -> None:
    emit(team_id=key.team_id, type="key.created", data=key_json(key))


def _key_rotated(sender, key: ApiKey, previous_masked: str = "", **kwargs) -> None:
    data = key_json(key)
    data["previous_prefix"] = previous_masked
    data["previous_secret_expires_at"] = key.previous_expires_at
    emit(team_id=key.team_id, type="key.rotated", data=data)


def _key_revoked(sender, key: ApiKey, **kwargs) -> None:
    emit(team_id=key.team_id, type="key.revoked", data=key_json(key))


def _member_joined(sender, membership: Membership, invited_by=None, **kwargs) -> None:
    data = {
        "object": "member",
        "email": membership.user.email,
        "name": membership.user.name,
        "role": membership.role,
        "joined_at": membership.created_at,
        "invited_by": invited_by.email if invited_by is not None else None,
    }
    emit(team_id=membership.team_id, type="member.joined", data=data)


def connect() -> None:
    signals.key_created.connect(_key_created, dispatch_uid="webhooks.key_created")
    signals.key_rotated.connect(_key_rotated, dispatch_uid="webhooks.key_rotated")
    signals.key_revoked.connect(_key_revoked, dispatch_uid="webhooks.key_revoked")
    signals.member_joined.connect(_member_joined, dispatch_uid="webhooks.member_joined")
