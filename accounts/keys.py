"""API-key services: mint, rotate, revoke, update limits. The plaintext leaves only via the return value.

Who may do what is decided by `KeyActor`: a signed-in member (their role), an API key holding
`keys:write` (it acts with its creator's current role and can never hand out more than it holds),
or the system (commands, the Django admin). Every change is audited with the key's masked prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import auth, keyformat, signals
from accounts.models import DEFAULT_SCOPES, ApiKey, KeyMode, Membership, Plan, Project, Role, Scope, Team, User
from accounts.permissions import Action, can
from accounts.services import AccountsError, PermissionDenied, audit
from config.net import parse_networks

DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
MAX_ALLOWED_MODELS = 200
MAX_IP_ENTRIES = 100
_UNSET = object()
# How people read the fields in messages (the API's `param` names the field itself).
FIELD_LABELS = {
    "name": "name",
    "allowed_models": "allowed models",
    "rpm_limit": "requests-per-minute limit",
    "tpm_limit": "tokens-per-minute limit",
    "monthly_spend_cap_nusd": "monthly spend cap",
    "ip_allowlist": "IP allow-list",
    "expires_at": "expiry",
    "max_cost_per_request_nusd": "default max cost per request",
    "project": "project",
}


class KeyNotFound(AccountsError):
    """Missing and "not yours" look the same, so key ids cannot be probed."""

    def __init__(self) -> None:
        super().__init__("not_found", "No such API key.")


class KeyFieldError(AccountsError):
    """A refused value, naming the field it came from."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(code, message)
        self.field = field


class LooserThanActor(PermissionDenied):
    """A key tried to hand out (or give itself) a limit looser than its own."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.code = "limit_exceeds_own"
        self.field = field


@dataclass(frozen=True)
class MintedKey:
    key: ApiKey
    plaintext: str  # shown once; never stored or logged


# --- who is acting --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyBounds:
    """An acting key's own limits. Every key it creates or changes must be at least as strict, so a
    `keys:write` key can never mint (or turn itself into) a key that reaches further than it does."""

    allowed_models: frozenset[str]  # empty: every model
    rpm_limit: int | None  # effective (the key's override capped by the plan); None: unlimited
    tpm_limit: int | None
    monthly_spend_cap_nusd: int | None
    ip_allowlist: tuple  # networks; empty: any address
    expires_at: datetime | None
    project_id: int | None = None  # a key in a project keeps the keys it makes inside its project's budget

    @classmethod
    def of(cls, ctx: auth.KeyContext, row: ApiKey) -> KeyBounds:
        return cls(
            allowed_models=frozenset(ctx.allowed_models),
            rpm_limit=ctx.rpm_limit,
            tpm_limit=ctx.tpm_limit,
            monthly_spend_cap_nusd=ctx.monthly_spend_cap_nusd,
            ip_allowlist=parse_networks(row.ip_allowlist),
            expires_at=row.expires_at,
            project_id=row.project_id,
        )

    def check(self, team: Team, name: str, value) -> None:
        """`value` is already validated; raises LooserThanActor when it is looser than this key's own."""
        problem = getattr(self, f"_{name}_problem", None)
        message = problem(team, name, value) if problem else None
        if message:
            raise LooserThanActor(message, name)

    def _allowed_models_problem(self, team: Team, name: str, value) -> str | None:
        outside = sorted(set(value) - self.allowed_models)
        if self.allowed_models and (not value or outside):
            return "A key limited to models can only give keys a subset of them: " + (
                f"{', '.join(outside)} not allowed." if outside else "choose the allowed models."
            )
        return None

    def _rate_problem(self, team: Team, name: str, value) -> str | None:
        own = self.rpm_limit if name == "rpm_limit" else self.tpm_limit
        effective = value if value is not None else (team.rpm_limit if name == "rpm_limit" else team.tpm_limit)
        if own is not None and (effective is None or effective > own):
            return f"The {FIELD_LABELS[name]} must be set to at most {own:,}, this key's own limit."
        return None

    _rpm_limit_problem = _tpm_limit_problem = _rate_problem

    def _monthly_spend_cap_nusd_problem(self, team: Team, name: str, value) -> str | None:
        own = self.monthly_spend_cap_nusd
        if own is not None and (value is None or value > own):
            return "The monthly spend cap must be set, no higher than this key's own cap."
        return None

    def _ip_allowlist_problem(self, team: Team, name: str, value) -> str | None:
        if not self.ip_allowlist:
            return None
        networks = parse_networks(value)
        outside = [
            str(n)
            for n in networks
            if not any(n.version == own.version and n.subnet_of(own) for own in self.ip_allowlist)
        ]
        if not networks or outside:
            return "A key with an IP allow-list can only give keys an allow-list inside its own: " + (
                f"{', '.join(outside)} is outside it." if outside else "set an IP allow-list."
            )
        return None

    def _project_problem(self, team: Team, name: str, value) -> str | None:
        if self.project_id is not None and (value is None or value.pk != self.project_id):
            return "A key in a project can only give keys its own project (whose budget they then share)."
        return None

    def _expires_at_problem(self, team: Team, name: str, value) -> str | None:
        if self.expires_at is not None and (value is None or value > self.expires_at):
            return f"The expiry must be set, no later than this key's own ({self.expires_at:%Y-%m-%d %H:%M} UTC)."
        return None


@dataclass(frozen=True)
class KeyActor:
    team: Team
    user: User | None = None  # the person; for a key actor, the key's creator
    role: str | None = None  # the person's role in `team` (for a key: its creator's current role)
    key: auth.KeyContext | None = None  # set when acting through an API key
    system_label: str = ""  # set for commands and the Django admin: no role checks
    ip: str | None = field(default=None, compare=False)
    bounds: KeyBounds | None = field(default=None, compare=False)  # set with `key`: its own limits

    @classmethod
    def for_user(cls, user: User, team: Team, *, ip: str | None = None) -> KeyActor:
        role = Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()
        return cls(team=team, user=user, role=role, ip=ip)

    @classmethod
    def for_key(cls, ctx: auth.KeyContext, *, ip: str | None = None) -> KeyActor:
        """A key acts with its creator's current role, so it never outranks the person who made it.

        A key minted by an operator (no creator) manages the whole team, like an admin.
        """
        assert ctx.key_id is not None, "the management API takes API keys, never a Playground credential"
        row = ApiKey.objects.select_related("team", "created_by").get(pk=ctx.key_id)
        bounds = KeyBounds.of(ctx, row)
        if row.created_by is None:
            return cls(team=row.team, role=Role.ADMIN, key=ctx, ip=ip, bounds=bounds)
        role = Membership.objects.filter(team=row.team, user=row.created_by).values_list("role", flat=True).first()
        return cls(team=row.team, user=row.created_by, role=role, key=ctx, ip=ip, bounds=bounds)

    @classmethod
    def system(cls, team: Team, label: str, *, user: User | None = None, ip: str | None = None) -> KeyActor:
        return cls(team=team, user=user, system_label=label, ip=ip)

    # audit fields
    @property
    def audit_user(self) -> User | None:
        return None if self.key else self.user

    @property
    def label(self) -> str:
        if self.key:
            return f"api key {self.key.masked}"
        if self.system_label:
            return self.system_label
        return self.user.email if self.user else "system"

    def _can(self, action: Action) -> bool:
        return bool(self.system_label) or can(self.role, action)

    def require_view(self) -> None:
        if not self._can(Action.KEYS_VIEW):
            raise PermissionDenied("Your role in this team does not allow viewing API keys.")

    def require_create(self) -> None:
        if not (self._can(Action.KEYS_MANAGE_ALL) or self._can(Action.KEYS_MANAGE_OWN)):
            raise PermissionDenied("Your role in this team does not allow creating API keys.")

    def require_manage(self, key: ApiKey) -> None:
        if self._can(Action.KEYS_MANAGE_ALL):
            return
        if self._can(Action.KEYS_MANAGE_OWN) and self.user is not None and key.created_by_id == self.user.pk:
            return
        raise PermissionDenied("You can only manage API keys you created.")


# --- validation ------------------------------------------------------------------------------


def validate_scopes(scopes) -> list[str]:
    scopes = list(dict.fromkeys(scopes))
    unknown = [s for s in scopes if s not in Scope.values]
    if unknown:
        raise AccountsError("invalid_scope", f"Unknown scope(s): {', '.join(unknown)}.")
    if not scopes:
        raise AccountsError("invalid_scope", "A key needs at least one scope.")
    return scopes


def _validate_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise KeyFieldError("invalid_name", "A key needs a name of 1 to 100 characters.", "name")
    return name


def _validate_rate(team: Team, value: int | None, which: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KeyFieldError("invalid_limit", f"The {FIELD_LABELS[which]} must be a positive whole number.", which)
    plan_limit = team.rpm_limit if which == "rpm_limit" else team.tpm_limit
    if plan_limit is not None and value > plan_limit:
        unit = "requests" if which == "rpm_limit" else "tokens"
        raise KeyFieldError(
            "limit_exceeds_plan",
            f"The {FIELD_LABELS[which]} ({value:,}) is above the {Plan(team.plan).label} plan's {plan_limit:,} "
            f"{unit} per minute; a key's limit can only be lower than its team's plan.",
            which,
        )
    return value


def _validate_cap(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KeyFieldError(
            "invalid_limit", "The monthly spend cap must be zero or more (or empty: no cap).", "monthly_spend_cap_nusd"
        )
    return value


def _validate_max_cost(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise KeyFieldError(
            "invalid_limit",
            "The default max cost per request must be more than zero (or empty: none).",
            "max_cost_per_request_nusd",
        )
    return value


def _validate_project(team: Team, value) -> Project | None:
    """A project of the key's team, given as itself or its public id; None for none."""
    if value is None or value == "":
        return None
    project = value if isinstance(value, Project) else None
    if project is None and isinstance(value, str):
        project = Project.objects.filter(team=team, public_id=value).first()
    if project is None or project.team_id != team.pk:
        raise KeyFieldError("invalid_project", "No such project in this team.", "project")
    return project


def _validate_models(models: Iterable[str]) -> list[str]:
    models = list(dict.fromkeys(models or ()))
    if len(models) > MAX_ALLOWED_MODELS or any(not isinstance(m, str) or not m.strip() for m in models):
        raise KeyFieldError("invalid_models", f"Allow at most {MAX_ALLOWED_MODELS} models.", "allowed_models")
    return [m.strip() for m in models]


def _validate_ips(entries: Iterable[str]) -> list[str]:
    entries = list(entries or ())
    if len(entries) > MAX_IP_ENTRIES:
        raise KeyFieldError(
            "invalid_ip_allowlist", f"The IP allow-list can have at most {MAX_IP_ENTRIES} entries.", "ip_allowlist"
        )
    normalised = []
    for entry in entries:
        try:
            normalised.append(str(parse_networks([entry])[0]))
        except ValueError:
            raise KeyFieldError(
                "invalid_ip_allowlist", f"'{entry}' is not an IPv4/IPv6 address or CIDR.", "ip_allowlist"
            )
    return list(dict.fromkeys(normalised))


def _validate_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is not None and expires_at <= timezone.now():
        raise KeyFieldError("invalid_expiry", "The expiry must be in the future.", "expires_at")
    return expires_at


def _forget_on_commit(*hashes: str | None) -> None:
    transaction.on_commit(lambda: auth.forget(*hashes))


# --- queries ---------------------------------------------------------------------------------


def list_keys(actor: KeyActor) -> QuerySet[ApiKey]:
    actor.require_view()
    return (
        ApiKey.objects.filter(team=actor.team)
        .select_related("created_by", "team", "project")
        .order_by("-created_at", "-id")
    )


def get_key(actor: KeyActor, key_public_id: str) -> ApiKey:
    key = ApiKey.objects.select_related("created_by", "team").filter(team=actor.team, public_id=key_public_id).first()
    if key is None:
        raise KeyNotFound()
    actor.require_view()
    return key


def key_for_user(user: User, key_public_id: str, *, ip: str | None = None) -> tuple[ApiKey, KeyActor]:
    """A key in one of the user's teams with the user as actor, or KeyNotFound."""
    key = (
        ApiKey.objects.select_related("team", "created_by")
        .filter(public_id=key_public_id, team__memberships__user=user)
        .first()
    )
    if key is None:
        raise KeyNotFound()
    actor = KeyActor.for_user(user, key.team, ip=ip)
    actor.require_view()
    return key, actor


# --- services ---------------------------------------------------------------------------------


@transaction.atomic
def mint_key(
    *,
    team: Team,
    name: str,
    mode: str = KeyMode.LIVE,
    scopes=None,
    created_by: User | None = None,
    actor_label: str = "",
    ip: str | None = None,
    allowed_models=(),
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    monthly_spend_cap_nusd: int | None = None,
    ip_allowlist=(),
    expires_at: datetime | None = None,
    max_cost_per_request_nusd: int | None = None,
    project=None,
    audit_actor=_UNSET,
) -> MintedKey:
    """Low level: no role checks (commands call this; people and keys go through `create_key`)."""
    if mode not in KeyMode.values:
        raise KeyFieldError("invalid_mode", "Key mode must be 'live' or 'test'.", "mode")
    name = _validate_name(name)
    scopes = validate_scopes(DEFAULT_SCOPES if scopes is None else scopes)
    plaintext = keyformat.generate(mode)
    prefix, last4 = keyformat.display_parts(plaintext)
    key = ApiKey.objects.create(
        team=team,
        name=name,
        mode=mode,
        scopes=scopes,
        created_by=created_by,
        secret_hash=keyformat.lookup_hash(plaintext),
        display_prefix=prefix,
        last4=last4,
        allowed_models=_validate_models(allowed_models),
        rpm_limit=_validate_rate(team, rpm_limit, "rpm_limit"),
        tpm_limit=_validate_rate(team, tpm_limit, "tpm_limit"),
        monthly_spend_cap_nusd=_validate_cap(monthly_spend_cap_nusd),
        ip_allowlist=_validate_ips(ip_allowlist),
        expires_at=_validate_expiry(expires_at),
        max_cost_per_request_nusd=_validate_max_cost(max_cost_per_request_nusd),
        project=_validate_project(team, project),
    )
    audit(
        "key.created",
        team=team,
        actor=created_by if audit_actor is _UNSET else audit_actor,
        actor_label=actor_label,
        target=key.masked,
        ip=ip,
        key=key.public_id,
        mode=mode,
        scopes=scopes,
    )
    signals.key_created.send(sender=ApiKey, key=key)
    return MintedKey(key, plaintext)


def create_key(actor: KeyActor, *, name: str, mode: str = KeyMode.LIVE, scopes=None, **limits) -> MintedKey:
    """A member or a `keys:write` key mints a key; a key can never hand out more than it holds."""
    actor.require_create()
    scopes = validate_scopes(DEFAULT_SCOPES if scopes is None else scopes)
    if actor.key is not None:
        extra = sorted(set(scopes) - actor.key.scopes)
        if extra:
            raise PermissionDenied(f"An API key cannot grant scopes it does not have itself: {', '.join(extra)}.")
        if actor.key.is_test and mode != KeyMode.TEST:
            raise PermissionDenied("A test key can only create test keys.")
    if actor.bounds is not None:
        unknown = set(limits) - set(UPDATABLE)
        if unknown:
            raise AccountsError("invalid_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
        # `limit`, not `name`: this loop once reused the key's own `name` parameter, so a key minted by a
        # key was saved as "expires_at" (the last limit checked).
        for limit in LIMITS:  # what is not passed is the loosest value, and is checked as such
            actor.bounds.check(actor.team, limit, _VALIDATORS[limit](actor.team, limits.get(limit, _LOOSEST[limit])))
    return mint_key(
        team=actor.team,
        name=name,
        mode=mode,
        scopes=scopes,
        created_by=actor.user,
        actor_label=actor.label,
        ip=actor.ip,
        audit_actor=actor.audit_user,
        **limits,
    )


def _lock(key: ApiKey) -> ApiKey:
    return ApiKey.objects.select_for_update(of=("self",)).select_related("team", "created_by").get(pk=key.pk)


def _require_live(key: ApiKey) -> None:
    if key.revoked_at is not None:
        raise AccountsError("key_revoked", "This API key is revoked; it cannot be changed.")


@transaction.atomic
def rotate_key(key: ApiKey, *, actor: KeyActor, grace_seconds: int | None = None) -> MintedKey:
    """A new secret for the same key; the old one keeps working until the grace end.

    Only one old secret is kept: rotating again ends an earlier grace window at once.
    """
    grace = DEFAULT_GRACE if grace_seconds is None else timedelta(seconds=grace_seconds)
    if isinstance(grace_seconds, bool) or grace < timedelta(0) or grace > MAX_GRACE:
        raise KeyFieldError(
            "invalid_grace", "The grace period must be between 0 seconds and 7 days (604800 s).", "grace_seconds"
        )
    key = _lock(key)
    actor.require_manage(key)
    _require_live(key)
    dropped = key.previous_secret_hash
    now = timezone.now()
    plaintext = keyformat.generate(key.mode)
    prefix, last4 = keyformat.display_parts(plaintext)
    old_masked = key.masked
    key.previous_secret_hash, key.previous_display_prefix, key.previous_last4 = (
        key.secret_hash,
        key.display_prefix,
        key.last4,
    )
    key.previous_expires_at = now + grace
    key.previous_last_used_at = key.previous_last_used_ip = None  # a different old secret from now on
    key.secret_hash, key.display_prefix, key.last4 = keyformat.lookup_hash(plaintext), prefix, last4
    key.rotated_at = now
    key.save(
        update_fields=[
            "previous_secret_hash",
            "previous_display_prefix",
            "previous_last4",
            "previous_expires_at",
            "previous_last_used_at",
            "previous_last_used_ip",
            "secret_hash",
            "display_prefix",
            "last4",
            "rotated_at",
        ]
    )
    audit(
        "key.rotated",
        team=key.team,
        actor=actor.audit_user,
        actor_label=actor.label,
        target=key.masked,
        ip=actor.ip,
        key=key.public_id,
        previous=old_masked,
        grace_seconds=int(grace.total_seconds()),
        old_secret_expires_at=key.previous_expires_at.isoformat(),
    )
    signals.key_rotated.send(sender=ApiKey, key=key, previous_masked=old_masked)
    _forget_on_commit(key.previous_secret_hash, dropped)
    return MintedKey(key, plaintext)


@transaction.atomic
def revoke_key(key: ApiKey, *, actor: KeyActor) -> ApiKey:
    """Immediate: both the current and any old secret stop working (every process within a second)."""
    key = _lock(key)
    actor.require_manage(key)
    if key.revoked_at is not None:
        return key  # revoking twice changes nothing
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit(
        "key.revoked",
        team=key.team,
        actor=actor.audit_user,
        actor_label=actor.label,
        target=key.masked,
        ip=actor.ip,
        key=key.public_id,
    )
    signals.key_revoked.send(sender=ApiKey, key=key)
    _forget_on_commit(key.secret_hash, key.previous_secret_hash)
    return key


UPDATABLE = (
    "name",
    "allowed_models",
    "rpm_limit",
    "tpm_limit",
    "monthly_spend_cap_nusd",
    "ip_allowlist",
    "expires_at",
    "max_cost_per_request_nusd",
    "project",
)
LIMITS = UPDATABLE[1:]
_LOOSEST = {
    "allowed_models": (),
    "rpm_limit": None,
    "tpm_limit": None,
    "monthly_spend_cap_nusd": None,
    "ip_allowlist": (),
    "expires_at": None,
    "max_cost_per_request_nusd": None,
    "project": None,
}
_VALIDATORS = {
    "name": lambda team, v: _validate_name(v),
    "allowed_models": lambda team, v: _validate_models(v),
    "rpm_limit": lambda team, v: _validate_rate(team, v, "rpm_limit"),
    "tpm_limit": lambda team, v: _validate_rate(team, v, "tpm_limit"),
    "monthly_spend_cap_nusd": lambda team, v: _validate_cap(v),
    "ip_allowlist": lambda team, v: _validate_ips(v),
    "expires_at": lambda team, v: _validate_expiry(v),
    "max_cost_per_request_nusd": lambda team, v: _validate_max_cost(v),
    "project": _validate_project,
}


@transaction.atomic
def update_key_limits(key: ApiKey, *, actor: KeyActor, **changes) -> ApiKey:
    """Rename a key or change its limits; limits can never exceed the team plan."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise AccountsError("invalid_field", f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    key = _lock(key)
    actor.require_manage(key)
    _require_live(key)
    diff = {}
    for name, value in changes.items():
        value = _VALIDATORS[name](key.team, value)
        if actor.bounds is not None:
            actor.bounds.check(key.team, name, value)
        old = getattr(key, name)
        if old != value:
            diff[name] = {"old": _jsonable(old), "new": _jsonable(value)}
            setattr(key, name, value)
    if diff:
        key.save(update_fields=list(diff))
        audit(
            "key.updated",
            team=key.team,
            actor=actor.audit_user,
            actor_label=actor.label,
            target=key.masked,
            ip=actor.ip,
            key=key.public_id,
            changes=diff,
        )
        _forget_on_commit(key.secret_hash, key.previous_secret_hash)
    return key


def _jsonable(value):
    if isinstance(value, Project):
        return value.public_id
    return value.isoformat() if isinstance(value, datetime) else value


def grace_ends_at(key: ApiKey, now: datetime | None = None) -> datetime | None:
    """When the old secret stops working, while it still works."""
    now = now or timezone.now()
    if key.previous_secret_hash and key.previous_expires_at and key.previous_expires_at > now:
        return key.previous_expires_at
    return None
