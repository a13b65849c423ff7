"""Projects: groups of a team's API keys with a monthly budget of their own (owners and admins manage them; every
member who sees usage sees theirs). A key belongs to at most one project (accounts.keys sets it); the budget is
enforced where holds are placed (billing.spend)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from accounts import auth
from accounts.models import ApiKey, Project, Team, User
from accounts.permissions import Action
from accounts.services import AccountsError, audit, require

MAX_PROJECTS_PER_TEAM = 200
_UNSET = object()


class ProjectFieldError(AccountsError):
    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(code, message)
        self.field = field


def _name(team: Team, name: str, *, exclude: int | None = None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ProjectFieldError("invalid_name", "A project needs a name of 1 to 100 characters.", "name")
    taken = Project.objects.filter(team=team, name__iexact=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise ProjectFieldError("name_taken", f"This team already has a project named “{name}”.", "name")
    return name


def _budget(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ProjectFieldError(
            "invalid_budget", "The monthly budget must be zero or more (or empty: no budget).", "monthly_budget_nusd"
        )
    return value


def _forget_keys_on_commit(project: Project) -> None:
    """Keys carry their project's budget in every process's key cache: drop them, so the change applies within a
    second everywhere (accounts.auth)."""
    hashes = list(ApiKey.objects.filter(project=project).values_list("secret_hash", "previous_secret_hash"))
    transaction.on_commit(lambda: auth.forget(*(h for pair in hashes for h in pair)))


def list_projects(team: Team) -> QuerySet[Project]:
    return Project.objects.filter(team=team).order_by("name", "id")


@transaction.atomic
def create_project(
    *,
    actor: User | None,
    team: Team,
    name: str,
    monthly_budget_nusd: int | None = None,
    ip: str | None = None,
    actor_label: str = "",
) -> Project:
    """`actor` None: no role check (the system, or an API key whose creator's role was checked; `actor_label`
    names it in the audit log)."""
    if actor is not None:
        require(actor, team, Action.PROJECTS_MANAGE)
    if Project.objects.filter(team=team).count() >= MAX_PROJECTS_PER_TEAM:
        raise AccountsError("too_many_projects", f"A team can have at most {MAX_PROJECTS_PER_TEAM} projects.")
    project = Project.objects.create(
        team=team, name=_name(team, name), monthly_budget_nusd=_budget(monthly_budget_nusd)
    )
    audit(
        "project.created",
        team=team,
        actor=actor,
        actor_label=actor_label,
        target=project.name,
        ip=ip,
        project=project.public_id,
        monthly_budget_nusd=project.monthly_budget_nusd,
    )
    return project


@transaction.atomic
def update_project(
    project: Project,
    *,
    actor: User | None,
    name=_UNSET,
    monthly_budget_nusd=_UNSET,
    ip: str | None = None,
    actor_label: str = "",
) -> Project:
    project = Project.objects.select_for_update().select_related("team").get(pk=project.pk)
    if actor is not None:
        require(actor, project.team, Action.PROJECTS_MANAGE)
    changes: dict[str, object] = {}
    if name is not _UNSET:
        changes["name"] = _name(project.team, name, exclude=project.pk)
    if monthly_budget_nusd is not _UNSET:
        changes["monthly_budget_nusd"] = _budget(monthly_budget_nusd)
    diff = {k: {"old": getattr(project, k), "new": v} for k, v in changes.items() if getattr(project, k) != v}
    if diff:
        for field, values in diff.items():
            setattr(project, field, values["new"])
        project.save(update_fields=list(diff))
        audit(
            "project.updated",
            team=project.team,
            actor=actor,
            actor_label=actor_label,
            target=project.name,
            ip=ip,
            project=project.public_id,
            changes=diff,
        )
        if "monthly_budget_nusd" in diff:
            _forget_keys_on_commit(project)
    return project


@transaction.atomic
def delete_project(project: Project, *, actor: User | None, ip: str | None = None, actor_label: str = "") -> None:
    """Refused while a key that still works belongs to it; revoked keys leave it. Its receipts stay (unassigned)."""
    project = Project.objects.select_for_update().select_related("team").get(pk=project.pk)
    if actor is not None:
        require(actor, project.team, Action.PROJECTS_MANAGE)
    if ApiKey.objects.filter(project=project, revoked_at=None).exists():
        raise AccountsError(
            "project_in_use", "Keys still belong to this project: move them to another project or revoke them first."
        )
    ApiKey.objects.filter(project=project).update(project=None)
    audit(
        "project.deleted",
        team=project.team,
        actor=actor,
        actor_label=actor_label,
        target=project.name,
        ip=ip,
        project=project.public_id,
    )
    project.delete()
