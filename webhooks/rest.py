"""Management API for webhook endpoints (Django REST framework): parse → one service in webhooks.services →
serialise, in the management API's error envelope (accounts.rest).

A signed-in owner or admin, or an API key holding `webhooks:write` (acting for its own team, with its creator's
role). Another team's ids answer 404, exactly like ids that do not exist.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from accounts import rest as accounts_rest
from accounts.access import signed_in
from accounts.models import Scope
from accounts.rest_auth import ApiKeyAuthentication, ApiKeyPrincipal
from config.net import client_ip_from_request
from webhooks import services
from webhooks.models import Delivery, Endpoint


class WebhooksKeyAuthentication(ApiKeyAuthentication):
    scope = Scope.WEBHOOKS_WRITE


class WebhooksKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = WebhooksKeyAuthentication
    name = "WebhooksKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key with the webhooks:write scope."}


def exception_handler(exc, context):
    if isinstance(exc, services.WebhookError):
        return accounts_rest.error_response(context["request"], exc.status, exc.code, exc.message, param=exc.field)
    return accounts_rest.exception_handler(exc, context)


# --- serializers ---------------------------------------------------------------------------------------------------


class EndpointSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    object = serializers.SerializerMethodField()
    team = serializers.CharField(source="team.public_id", read_only=True)
    grace_ends_at = serializers.SerializerMethodField(help_text="Until when the previous secret also signs.")

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "object",
            "team",
            "url",
            "description",
            "events",
            "enabled",
            "disabled_reason",
            "secret_hint",
            "secret_rotated_at",
            "grace_ends_at",
            "failing_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_object(self, endpoint: Endpoint) -> str:
        return "webhook_endpoint"

    def get_grace_ends_at(self, endpoint: Endpoint) -> str | None:
        end = endpoint.grace_ends_at()
        return serializers.DateTimeField().to_representation(end) if end else None


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.SerializerMethodField(help_text="The signing secret. Shown once, never again.")

    class Meta(EndpointSerializer.Meta):
        fields = ["secret", *EndpointSerializer.Meta.fields]
        read_only_fields = fields

    def get_secret(self, endpoint: Endpoint) -> str:
        return self.context["secret"]


class CreateEndpointSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2048, trim_whitespace=True)
    events = serializers.ListField(
        child=serializers.CharField(max_length=64), default=lambda: ["*"], help_text='Event types, or ["*"].'
    )
    description = serializers.CharField(max_length=300, allow_blank=True, default="")
    enabled = serializers.BooleanField(default=True)


class UpdateEndpointSerializer(CreateEndpointSerializer):
    """Used with partial=True: only the fields sent change (DRF applies no defaults then)."""

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({sorted(unknown)[0]: ["This field cannot be changed."]})
        return attrs


class RotateSecretSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=int(services.MAX_GRACE.total_seconds()),
        default=int(services.DEFAULT_GRACE.total_seconds()),
        help_text="How long the previous secret keeps signing too: 0 to 604800 seconds (default 24 h).",
    )


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    object = serializers.SerializerMethodField()
    endpoint = serializers.CharField(source="endpoint.public_id", read_only=True)
    event = serializers.CharField(source="event.public_id", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "object",
            "endpoint",
            "event",
            "event_type",
            "attempt",
            "manual",
            "status",
            "http_status",
            "latency_ms",
            "response_body",
            "error",
            "scheduled_at",
            "started_at",
            "finished_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_object(self, row: Delivery) -> str:
        return "webhook_delivery"


# --- views -----------------------------------------------------------------------------------------------------------


class _WebhooksView(GenericAPIView):
    authentication_classes = [WebhooksKeyAuthentication, SessionAuthentication]
    serializer_class: type[serializers.BaseSerializer] = EndpointSerializer

    def get_exception_handler(self):
        return exception_handler

    def _ip(self) -> str | None:
        return client_ip_from_request(self.request)

    def team_actor(self, team_public_id: str) -> services.Actor:
        user = self.request.user
        if isinstance(user, ApiKeyPrincipal):
            if user.ctx.team_public_id != team_public_id:
                raise Http404("No such team.")
            return services.Actor.for_key(user.ctx, ip=self._ip())
        return services.Actor.for_user(signed_in(user), team_public_id, ip=self._ip())

    def endpoint_and_actor(self, endpoint_public_id: str) -> tuple[Endpoint, services.Actor]:
        user = self.request.user
        if isinstance(user, ApiKeyPrincipal):
            actor = services.Actor.for_key(user.ctx, ip=self._ip())
        else:
            person = signed_in(user)
            team_public_id = services.team_of_endpoint(person, endpoint_public_id)
            actor = services.Actor.for_user(person, team_public_id, ip=self._ip())
        return services.get_endpoint(actor, endpoint_public_id), actor


class TeamWebhooksView(_WebhooksView):
    @extend_schema(summary="List a team's webhook endpoints", responses=EndpointSerializer(many=True))
    def get(self, request, team_public_id: str):
        page = self.paginate_queryset(services.list_endpoints(self.team_actor(team_public_id)).select_related("team"))
        return self.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(
        summary="Add a webhook endpoint (its signing secret is in the response, once)",
        request=CreateEndpointSerializer,
        responses={201: EndpointWithSecretSerializer},
    )
    def post(self, request, team_public_id: str):
        actor = self.team_actor(team_public_id)
        data = CreateEndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.create_endpoint(actor=actor, **data.validated_data)
        body = EndpointWithSecretSerializer(created.endpoint, context={"secret": created.secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailView(_WebhooksView):
    @extend_schema(summary="Retrieve a webhook endpoint")
    def get(self, request, endpoint_public_id: str):
        endpoint, _ = self.endpoint_and_actor(endpoint_public_id)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(summary="Change an endpoint's URL, events, description or enabled", request=UpdateEndpointSerializer)
    def patch(self, request, endpoint_public_id: str):
        endpoint, actor = self.endpoint_and_actor(endpoint_public_id)
        data = UpdateEndpointSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.update_endpoint(endpoint, actor=actor, **data.validated_data)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(summary="Delete a webhook endpoint and its delivery log", responses={204: None})
    def delete(self, request, endpoint_public_id: str):
        endpoint, actor = self.endpoint_and_actor(endpoint_public_id)
        services.delete_endpoint(endpoint, actor=actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSecretView(_WebhooksView):
    @extend_schema(
        summary="Rotate the signing secret: a new one now; the previous one also signs until the grace end",
        request=RotateSecretSerializer,
        responses=EndpointWithSecretSerializer,
    )
    def post(self, request, endpoint_public_id: str):
        endpoint, actor = self.endpoint_and_actor(endpoint_public_id)
        data = RotateSecretSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rotated = services.rotate_secret(endpoint, actor=actor, grace_seconds=data.validated_data["grace_seconds"])
        return Response(EndpointWithSecretSerializer(rotated.endpoint, context={"secret": rotated.secret}).data)


class DeliveriesView(_WebhooksView):
    serializer_class = DeliverySerializer

    @extend_schema(summary="The endpoint's delivery log, newest first", responses=DeliverySerializer(many=True))
    def get(self, request, endpoint_public_id: str):
        endpoint, _ = self.endpoint_and_actor(endpoint_public_id)
        page = self.paginate_queryset(services.list_deliveries(endpoint).select_related("endpoint"))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


class RedeliverView(_WebhooksView):
    serializer_class = DeliverySerializer

    @extend_schema(
        summary="Send a delivery's event again, as the next attempt", request=None, responses={202: DeliverySerializer}
    )
    def post(self, request, endpoint_public_id: str, delivery_public_id: str):
        endpoint, actor = self.endpoint_and_actor(endpoint_public_id)
        row = services.redeliver(endpoint, delivery_public_id, actor=actor)
        row.refresh_from_db()  # the embedded default has already sent it; Celery may not have yet
        return Response(DeliverySerializer(row).data, status=status.HTTP_202_ACCEPTED)


class TestEventView(_WebhooksView):
    serializer_class = DeliverySerializer

    @extend_schema(summary="Send a ping event to this endpoint", request=None, responses={202: DeliverySerializer})
    def post(self, request, endpoint_public_id: str):
        endpoint, actor = self.endpoint_and_actor(endpoint_public_id)
        row = services.send_test(endpoint, actor=actor)
        row.refresh_from_db()
        return Response(DeliverySerializer(row).data, status=status.HTTP_202_ACCEPTED)
