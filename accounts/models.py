"""Users, teams (the tenant), memberships with roles, invitations, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

from config.ids import new_id


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with an email address; belongs to any number of teams."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log into the Django admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Plan(models.TextChoices):
    STARTER = "starter", "Starter"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


# Requests and tokens per minute per plan; None means unlimited.
PLAN_LIMITS: dict[str, tuple[int | None, int | None]] = {
    Plan.STARTER: (60, 100_000),
    Plan.PRO: (1_000, 2_000_000),
    Plan.ENTERPRISE: (None, None),
}


def _team_id() -> str:
    return new_id("team")


class Team(models.Model):
    """The tenant: owns members, keys, the wallet, receipts. Addressed publicly by `public_id`."""

    public_id = models.CharField(max_length=40, unique=True, default=_team_id, editable=False)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.STARTER)
    store_completions = models.BooleanField(
        default=False, help_text="Keep full chat completions (as if every request set store: true)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def rpm_limit(self) -> int | None:
        return PLAN_LIMITS[self.plan][0]

    @property
    def tpm_limit(self) -> int | None:
        return PLAN_LIMITS[self.plan][1]


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"
    BILLING = "billing", "Billing"


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.DEVELOPER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team_user")]
        ordering = ["team", "created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


INVITATION_TTL = timedelta(days=7)


def _invitation_expiry() -> datetime:
    return timezone.now() + INVITATION_TTL


class Invitation(models.Model):
    """An emailed, single-use invitation. Only the token's hash is stored."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.DEVELOPER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set when a newer invitation to the same address (a resend) takes this one's place: its link then says
    # so, instead of claiming someone revoked it.
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.team} ({self.role})"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.replaced_at:
            return "replaced"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class AuditLog(models.Model):
    """Who did what to which object, from where. Append-only; shown read-only in the admin."""

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_logs")
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True, help_text="e.g. an API key prefix or 'system'.")
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.target}"


class Scope(models.TextChoices):
    INFERENCE = "inference", "Inference (chat, completions, embeddings)"
    MODELS_READ = "models:read", "Read models"
    BILLING_READ = "billing:read", "Read balance, receipts and usage"
    KEYS_WRITE = "keys:write", "Manage keys through the API"
    EVENTS_READ = "events:read", "Read the event log"
    WEBHOOKS_WRITE = "webhooks:write", "Manage webhook endpoints through the API"


DEFAULT_SCOPES = [Scope.INFERENCE.value, Scope.MODELS_READ.value, Scope.BILLING_READ.value]


def _project_id() -> str:
    return new_id("proj")


class Project(models.Model):
    """A group of a team's API keys with an optional monthly budget of its own (and its own usage page).

    A key belongs to at most one project. A request with such a key must fit the key's monthly cap, the
    project's budget and the team's wallet, all checked while its hold is placed (billing.backends.orm)."""

    public_id = models.CharField(max_length=40, unique=True, default=_project_id, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    monthly_budget_nusd = models.BigIntegerField(
        null=True, blank=True, help_text="What the project's keys may spend per calendar month (UTC); empty: no budget."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="project_name_unique_in_team"),
            models.CheckConstraint(
                condition=models.Q(monthly_budget_nusd__isnull=True) | models.Q(monthly_budget_nusd__gte=0),
                name="project_budget_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.team})"


class KeyMode(models.TextChoices):
    LIVE = "live", "Live"
    TEST = "test", "Test"


def _key_id() -> str:
    return new_id("key")


class ApiKey(models.Model):
    """An API key record. The secret itself is never stored: only an HMAC of it for lookup.

    Rotation moves the current hash to `previous_secret_hash`, valid until `previous_expires_at`.
    """

    public_id = models.CharField(max_length=40, unique=True, default=_key_id, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    mode = models.CharField(max_length=4, choices=KeyMode.choices, default=KeyMode.LIVE)
    secret_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=24, help_text="First characters of the secret, for display.")
    last4 = models.CharField(max_length=4)
    previous_secret_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    previous_display_prefix = models.CharField(max_length=24, blank=True)
    previous_last4 = models.CharField(max_length=4, blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    # When and from where the previous secret was last used (recorded at most once a minute, like
    # last_used_at), so a customer can see the old secret has gone quiet and revoke it early.
    previous_last_used_at = models.DateTimeField(null=True, blank=True)
    previous_last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Limits (None / empty = no extra limit beyond the team plan).
    allowed_models = models.JSONField(default=list, blank=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    monthly_spend_cap_nusd = models.BigIntegerField(null=True, blank=True)
    ip_allowlist = models.JSONField(default=list, blank=True)
    # The most one request may cost when it does not say (Tollgate-Max-Cost / max_cost_usd); None: no default.
    max_cost_per_request_nusd = models.BigIntegerField(null=True, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT, related_name="api_keys")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(monthly_spend_cap_nusd__isnull=True) | models.Q(monthly_spend_cap_nusd__gte=0),
                name="apikey_spend_cap_non_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(max_cost_per_request_nusd__isnull=True) | models.Q(max_cost_per_request_nusd__gt=0),
                name="apikey_max_cost_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.display_prefix}…{self.last4}"

    @property
    def is_test(self) -> bool:
        return self.mode == KeyMode.TEST

    def status(self, now: datetime | None = None) -> str:
        now = now or timezone.now()
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        if self.previous_expires_at and self.previous_expires_at > now:
            return "rotating"
        return "active"


def _playground_token_id() -> str:
    return new_id("pgt")


class PlaygroundToken(models.Model):
    """A short-lived credential the dashboard's Playground calls /v1 with (accounts/playground.py): one member,
    one team, one mode, bound to the browser session that minted it. Only HMACs are stored: of the token and
    of that session's key."""

    public_id = models.CharField(max_length=40, unique=True, default=_playground_token_id, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="playground_tokens")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="playground_tokens")
    mode = models.CharField(max_length=4, choices=KeyMode.choices, default=KeyMode.LIVE)
    token_hash = models.CharField(max_length=64, unique=True)
    session_hash = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Playground {self.mode} token of {self.user} in {self.team}"
