"""The permission matrix: which role may do what in a team. Checked here and nowhere else."""

from __future__ import annotations

from enum import StrEnum

from accounts.models import Role


class Action(StrEnum):
    TEAM_DELETE = "team.delete"
    TEAM_TRANSFER = "team.transfer_ownership"
    TEAM_SETTINGS = "team.settings"
    MEMBERS_VIEW = "members.view"
    MEMBERS_MANAGE = "members.manage"  # invite, change role, remove
    KEYS_VIEW = "keys.view"
    KEYS_MANAGE_OWN = "keys.manage_own"  # create keys and manage the ones you created
    KEYS_MANAGE_ALL = "keys.manage_all"  # manage anyone's keys
    BILLING_VIEW = "billing.view"  # balance, ledger, receipts
    BILLING_MANAGE = "billing.manage"  # top-up, auto-recharge
    USAGE_VIEW = "usage.view"
    EVENTS_VIEW = "events.view"  # the event log (/v1/events from a session)
    WEBHOOKS_MANAGE = "webhooks.manage"  # webhook endpoints: add, edit, rotate secrets, test, redeliver
    IMAGES_GENERATE = "images.generate"  # start and cancel image jobs from the dashboard
    PLAYGROUND_USE = "playground.use"  # chat in the dashboard's Playground, paid from the team's wallet
    PROJECTS_MANAGE = "projects.manage"  # create projects, set their budgets, delete them (their usage: USAGE_VIEW)


_ALL = frozenset(Action)
_READ = frozenset({Action.MEMBERS_VIEW, Action.KEYS_VIEW, Action.BILLING_VIEW, Action.USAGE_VIEW, Action.EVENTS_VIEW})

MATRIX: dict[str, frozenset[Action]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: _ALL - {Action.TEAM_DELETE, Action.TEAM_TRANSFER},
    Role.DEVELOPER: frozenset(
        {
            Action.MEMBERS_VIEW,
            Action.KEYS_VIEW,
            Action.KEYS_MANAGE_OWN,
            Action.USAGE_VIEW,
            Action.IMAGES_GENERATE,
            Action.PLAYGROUND_USE,
        }
    ),
    Role.VIEWER: _READ,
    Role.BILLING: frozenset({Action.MEMBERS_VIEW, Action.BILLING_VIEW, Action.BILLING_MANAGE, Action.USAGE_VIEW}),
}

# Roles an admin may hand out; only an owner may make another owner.
ASSIGNABLE_BY: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(Role.values),
    Role.ADMIN: frozenset(Role.values) - {Role.OWNER},
}


def can(role: str | None, action: Action | str) -> bool:
    if role is None:
        return False
    return Action(action) in MATRIX.get(role, frozenset())


def can_assign(actor_role: str | None, role: str) -> bool:
    return role in ASSIGNABLE_BY.get(actor_role or "", frozenset())
