from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone

from accounts.keys import KeyActor, revoke_key
from accounts.models import ApiKey, AuditLog, Invitation, Membership, Project, Team, User
from config.net import client_ip_from_request


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "plan", "public_id", "created_at"]
    list_filter = ["plan", "created_at"]
    search_fields = ["slug", "name", "public_id", "memberships__user__email"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "team__slug", "team__name"]
    autocomplete_fields = ["user", "team"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "team", "role", "status", "created_at", "expires_at"]
    list_filter = ["role", "created_at"]
    search_fields = ["email", "team__slug"]
    exclude = ["token_hash"]
    readonly_fields = [
        "team",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    ]

    def has_add_permission(self, request):
        return False  # invitations are sent from the dashboard so the token reaches the invitee


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "team", "actor_label", "action", "target", "ip"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "target", "actor_label", "team__slug"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("active", "Active"),
            ("rotating", "Rotating (old secret in grace)"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        live = queryset.filter(revoked_at=None)
        if self.value() == "revoked":
            return queryset.exclude(revoked_at=None)
        if self.value() == "expired":
            return live.filter(expires_at__lte=now)
        if self.value() == "rotating":
            return live.exclude(expires_at__lte=now).filter(previous_expires_at__gt=now)
        if self.value() == "active":
            return live.exclude(expires_at__lte=now).exclude(previous_expires_at__gt=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are minted where the secret can be shown once (dashboard, API, create_team), never here.

    No field can reveal a secret: the lookup hashes are excluded and everything else is read-only
    (limits change through the dashboard or API, which check the plan and audit).
    """

    list_display = ["masked", "name", "team", "mode", "key_status", "last_used_at", "created_at", "public_id"]
    list_filter = [KeyStatusFilter, "mode", "team__plan", "created_at"]
    search_fields = [
        "public_id",
        "name",
        "display_prefix",
        "last4",
        "team__slug",
        "team__public_id",
        "created_by__email",
    ]
    list_select_related = ["team"]
    exclude = ["secret_hash", "previous_secret_hash"]
    readonly_fields = [
        "public_id",
        "team",
        "name",
        "mode",
        "masked",
        "scopes",
        "created_by",
        "created_at",
        "rotated_at",
        "last_used_at",
        "revoked_at",
        "display_prefix",
        "last4",
        "previous_display_prefix",
        "previous_last4",
        "previous_expires_at",
        "expires_at",
        "allowed_models",
        "rpm_limit",
        "tpm_limit",
        "monthly_spend_cap_nusd",
        "max_cost_per_request_nusd",
        "project",
        "ip_allowlist",
    ]
    actions = ["revoke_selected"]

    @admin.display(description="key")
    def masked(self, obj: ApiKey) -> str:
        return obj.masked

    @admin.display(description="status")
    def key_status(self, obj: ApiKey) -> str:
        return obj.status()

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        ip = client_ip_from_request(request)
        count = 0
        for key in queryset.select_related("team").filter(revoked_at=None):
            revoke_key(key, actor=KeyActor.system(key.team, f"admin {request.user.email}", user=request.user, ip=ip))
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Read-only here: teams manage their projects (dashboard, management API), each change audited."""

    list_display = ["name", "team", "monthly_budget_nusd", "public_id", "created_at"]
    search_fields = ["name", "public_id", "team__slug"]
    list_select_related = ["team"]
    readonly_fields = ["public_id", "team", "name", "monthly_budget_nusd", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
