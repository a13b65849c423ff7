"""Management API for API keys (Django REST framework): parse → one service in accounts.keys → serialise.

Signed-in members act with their role; an API key needs `keys:write` and acts for its own team only.
Another team's ids answer 404, exactly like ids that do not exist.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts import keys, projects
from accounts.access import signed_in, team_for_user
from accounts.models import ApiKey, KeyMode, Project, Scope
from accounts.rest_auth import ApiKeyPrincipal
from accounts.services import AccountsError, PermissionDenied
from config.net import client_ip_from_request

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1

# --- errors: {"error": {"code", "message", "param"}, "request_id"} -------------------------------


def error_response(
    request, status_code: int, code: str, message: str, param: str | None = None, fields=None
) -> Response:
    error: dict[str, object] = {"code": code, "message": message, "param": param}
    if fields:
        error["fields"] = fields
    request_id = getattr(getattr(request, "_request", request), "request_id", "")
    return Response({"error": error, "request_id": request_id}, status=status_code)


def _first_field_error(detail) -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for name, value in detail.items():
            inner_name, message = _first_field_error(value)
            return (name if name != "non_field_errors" else inner_name), message
    if isinstance(detail, list) and detail:
        return _first_field_error(detail[0])
    return None, str(detail)


def exception_handler(exc, context):
    request = context["request"]
    if isinstance(exc, keys.KeyNotFound):
        return error_response(request, 404, exc.code, exc.message)
    if isinstance(exc, PermissionDenied):
        return error_response(request, 403, exc.code, exc.message, param=getattr(exc, "field", None))
    if isinstance(exc, keys.KeyFieldError | projects.ProjectFieldError):
        return error_response(request, 400, exc.code, exc.message, param=exc.field)
    if isinstance(exc, AccountsError):
        return error_response(request, 400, exc.code, exc.message)
    if isinstance(exc, exceptions.ValidationError):
        param, message = _first_field_error(exc.detail)
        text = f"Invalid value for '{param}': {message}" if param else message
        return error_response(request, 400, "invalid_request", text, param=param, fields=exc.detail)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    if isinstance(exc, Http404):
        code, message = "not_found", "Not found."
    else:
        detail = getattr(exc, "detail", "")
        code = detail.code if hasattr(detail, "code") else getattr(exc, "default_code", "error")
        message = str(detail)
    out = error_response(request, response.status_code, code, message)
    for header in ("WWW-Authenticate", "Retry-After"):
        if header in response:
            out[header] = response[header]
    return out


# --- serializers ---------------------------------------------------------------------------------


class LimitsSerializer(serializers.Serializer):
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    # Bounded by the columns (int4, int8): a larger number is a 400 naming the field, not a database error.
    rpm_limit = serializers.IntegerField(min_value=1, max_value=INT4_MAX, allow_null=True, required=False)
    tpm_limit = serializers.IntegerField(min_value=1, max_value=INT4_MAX, allow_null=True, required=False)
    monthly_spend_cap_nusd = serializers.IntegerField(min_value=0, max_value=INT8_MAX, allow_null=True, required=False)
    ip_allowlist = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    max_cost_per_request_nusd = serializers.IntegerField(
        min_value=1,
        max_value=INT8_MAX,
        allow_null=True,
        required=False,
        help_text="The cost cap of a request that sends none (Tollgate-Max-Cost / max_cost_usd); null: none.",
    )
    project = serializers.CharField(
        max_length=40,
        allow_null=True,
        required=False,
        help_text="A project id (proj_…) of the key's team: its monthly budget then applies too; null: none.",
    )


class ApiKeySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    team = serializers.CharField(source="team.public_id", read_only=True)
    prefix = serializers.CharField(source="masked", read_only=True)
    status = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    grace_ends_at = serializers.SerializerMethodField()
    old_secret_last_used_at = serializers.SerializerMethodField()
    old_secret_last_used_ip = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()
    project = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "team",
            "name",
            "prefix",
            "mode",
            "scopes",
            "status",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "rotated_at",
            "revoked_at",
            "grace_ends_at",
            "old_secret_last_used_at",
            "old_secret_last_used_ip",
            "project",
            "limits",
        ]
        read_only_fields = fields

    def get_status(self, key: ApiKey) -> str:
        return key.status()

    def get_created_by(self, key: ApiKey) -> str | None:
        return key.created_by.email if key.created_by else None

    def get_project(self, key: ApiKey) -> str | None:
        return key.project.public_id if key.project is not None else None

    def get_grace_ends_at(self, key: ApiKey) -> str | None:
        end = keys.grace_ends_at(key)
        return serializers.DateTimeField().to_representation(end) if end else None

    def get_old_secret_last_used_at(self, key: ApiKey) -> str | None:
        """While the old secret works: when it was last used (to the minute), so it can be revoked early."""
        if keys.grace_ends_at(key) is None or key.previous_last_used_at is None:
            return None
        return serializers.DateTimeField().to_representation(key.previous_last_used_at)

    def get_old_secret_last_used_ip(self, key: ApiKey) -> str | None:
        return key.previous_last_used_ip if keys.grace_ends_at(key) is not None else None

    @extend_schema(responses=LimitsSerializer)
    def get_limits(self, key: ApiKey) -> dict:
        return {
            "allowed_models": key.allowed_models,
            "rpm_limit": key.rpm_limit,
            "tpm_limit": key.tpm_limit,
            "monthly_spend_cap_nusd": key.monthly_spend_cap_nusd,
            "ip_allowlist": key.ip_allowlist,
            "max_cost_per_request_nusd": key.max_cost_per_request_nusd,
            "plan_rpm_limit": key.team.rpm_limit,
            "plan_tpm_limit": key.team.tpm_limit,
        }


class MintedKeySerializer(ApiKeySerializer):
    key = serializers.SerializerMethodField(help_text="The secret. Shown once, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = ["key", *ApiKeySerializer.Meta.fields]
        read_only_fields = fields

    def get_key(self, key: ApiKey) -> str:
        return self.context["plaintext"]


class CreateKeySerializer(LimitsSerializer):
    name = serializers.CharField(max_length=100)
    mode = serializers.ChoiceField(choices=KeyMode.choices, default=KeyMode.LIVE)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.values), required=False)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)


class UpdateKeySerializer(LimitsSerializer):
    name = serializers.CharField(max_length=100, required=False)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {sorted(unknown)[0]: ["This field cannot be changed (scopes and mode are fixed at creation)."]}
            )
        return attrs


class RotateKeySerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=int(keys.MAX_GRACE.total_seconds()),
        default=int(keys.DEFAULT_GRACE.total_seconds()),
        help_text="How long the old secret keeps working: 0 to 604800 seconds (default 24 h).",
    )


# --- views ---------------------------------------------------------------------------------------


class _KeysView(GenericAPIView):
    serializer_class: type[serializers.Serializer] = ApiKeySerializer

    def get_exception_handler(self):
        return exception_handler

    def _ip(self) -> str | None:
        return client_ip_from_request(self.request)

    def team_actor(self, team_public_id: str) -> keys.KeyActor:
        user = self.request.user
        if isinstance(user, ApiKeyPrincipal):
            if user.ctx.team_public_id != team_public_id:
                raise Http404("No such team.")
            return keys.KeyActor.for_key(user.ctx, ip=self._ip())
        person = signed_in(user)
        access = team_for_user(person, team_public_id)
        return keys.KeyActor(team=access.team, user=person, role=access.role, ip=self._ip())

    def key_and_actor(self, key_public_id: str) -> tuple[ApiKey, keys.KeyActor]:
        user = self.request.user
        if isinstance(user, ApiKeyPrincipal):
            actor = keys.KeyActor.for_key(user.ctx, ip=self._ip())
            return keys.get_key(actor, key_public_id), actor
        return keys.key_for_user(signed_in(user), key_public_id, ip=self._ip())


class TeamKeysView(_KeysView):
    @extend_schema(summary="List a team's API keys", responses=ApiKeySerializer(many=True))
    def get(self, request, team_public_id: str):
        queryset = keys.list_keys(self.team_actor(team_public_id))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(
        summary="Create an API key (the secret is in the response, once)",
        request=CreateKeySerializer,
        responses={201: MintedKeySerializer},
    )
    def post(self, request, team_public_id: str):
        actor = self.team_actor(team_public_id)
        data = CreateKeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        minted = keys.create_key(actor, **data.validated_data)
        body = MintedKeySerializer(minted.key, context={"plaintext": minted.plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)


class KeyDetailView(_KeysView):
    @extend_schema(summary="Retrieve an API key")
    def get(self, request, key_public_id: str):
        key, _ = self.key_and_actor(key_public_id)
        return Response(ApiKeySerializer(key).data)

    @extend_schema(summary="Rename a key or change its limits", request=UpdateKeySerializer)
    def patch(self, request, key_public_id: str):
        key, actor = self.key_and_actor(key_public_id)
        data = UpdateKeySerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        key = keys.update_key_limits(key, actor=actor, **data.validated_data)
        return Response(ApiKeySerializer(key).data)


class KeyRotateView(_KeysView):
    @extend_schema(
        summary="Rotate: a new secret now; the old one works until the grace end",
        request=RotateKeySerializer,
        responses=MintedKeySerializer,
    )
    def post(self, request, key_public_id: str):
        key, actor = self.key_and_actor(key_public_id)
        data = RotateKeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        minted = keys.rotate_key(key, actor=actor, grace_seconds=data.validated_data["grace_seconds"])
        return Response(MintedKeySerializer(minted.key, context={"plaintext": minted.plaintext}).data)


class KeyRevokeView(_KeysView):
    @extend_schema(summary="Revoke an API key immediately", request=None)
    def post(self, request, key_public_id: str):
        key, actor = self.key_and_actor(key_public_id)
        key = keys.revoke_key(key, actor=actor)
        return Response(ApiKeySerializer(key).data)


# --- projects ------------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    team = serializers.CharField(source="team.public_id", read_only=True)
    keys = serializers.SerializerMethodField(help_text="Ids of the keys in the project.")

    class Meta:
        model = Project
        fields = ["id", "team", "name", "monthly_budget_nusd", "keys", "created_at"]
        read_only_fields = fields

    def get_keys(self, project: Project) -> list[str]:
        return [k.public_id for k in project.api_keys.all()]


class ProjectInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    monthly_budget_nusd = serializers.IntegerField(min_value=0, max_value=INT8_MAX, allow_null=True, required=False)


class _ProjectsView(_KeysView):
    """Owners and admins (or a keys:write key acting with its creator's role) manage; other members read."""

    serializer_class = ProjectSerializer

    def access(self, team_public_id: str):
        actor = self.team_actor(team_public_id)
        actor.require_view()
        return actor

    def project(self, project_public_id: str) -> tuple[Project, keys.KeyActor]:
        user = self.request.user
        team_ids = (
            [user.ctx.team_id]
            if isinstance(user, ApiKeyPrincipal)
            else list(signed_in(user).memberships.values_list("team_id", flat=True))
        )
        project = (
            Project.objects.select_related("team").filter(public_id=project_public_id, team_id__in=team_ids).first()
        )
        if project is None:
            raise Http404("No such project.")
        return project, self.access(project.team.public_id)

    @staticmethod
    def manager(actor: keys.KeyActor):
        """The person the change is made as (the key's creator for a key); a role without the right is refused."""
        from accounts.permissions import Action

        if not actor._can(Action.PROJECTS_MANAGE):
            raise PermissionDenied("Only owners and admins manage projects.")
        return actor.user if actor.key is None else None


class TeamProjectsView(_ProjectsView):
    pagination_class = None  # a team has a handful of projects: the whole list, as served (and so documented)

    @extend_schema(summary="List a team's projects", responses=ProjectSerializer(many=True))
    def get(self, request, team_public_id: str):
        actor = self.access(team_public_id)
        rows = projects.list_projects(actor.team).prefetch_related("api_keys")
        return Response(ProjectSerializer(rows, many=True).data)

    @extend_schema(summary="Create a project", request=ProjectInSerializer, responses={201: ProjectSerializer})
    def post(self, request, team_public_id: str):
        actor = self.access(team_public_id)
        as_user = self.manager(actor)
        data = ProjectInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = projects.create_project(
            actor=as_user, team=actor.team, ip=self._ip(), actor_label=actor.label, **data.validated_data
        )
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(_ProjectsView):
    @extend_schema(summary="Retrieve a project")
    def get(self, request, project_public_id: str):
        project, _ = self.project(project_public_id)
        return Response(ProjectSerializer(project).data)

    @extend_schema(summary="Rename a project or change its monthly budget", request=ProjectInSerializer)
    def patch(self, request, project_public_id: str):
        project, actor = self.project(project_public_id)
        as_user = self.manager(actor)
        data = ProjectInSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = projects.update_project(
            project, actor=as_user, ip=self._ip(), actor_label=actor.label, **data.validated_data
        )
        return Response(ProjectSerializer(project).data)

    @extend_schema(summary="Delete a project (refused while working keys belong to it)", request=None)
    def delete(self, request, project_public_id: str):
        project, actor = self.project(project_public_id)
        projects.delete_project(project, actor=self.manager(actor), ip=self._ip(), actor_label=actor.label)
        return Response(status=status.HTTP_204_NO_CONTENT)
