"""Operators' view of events, webhook endpoints and the delivery log: read-only (endpoints change through
webhooks.services, which audits; a signing secret is never shown here, only its hint)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from webhooks.models import Delivery, Endpoint, Event


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "type", "team", "created_at")
    list_filter = ("type",)
    search_fields = ("public_id", "team__slug", "team__public_id")
    list_select_related = ("team",)
    fields = ("public_id", "team", "type", "created_at", "pretty_body")
    readonly_fields = fields

    @admin.display(description="Body")
    def pretty_body(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(json.loads(obj.body), indent=2))


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "team", "url", "enabled", "failing_since", "created_at")
    list_filter = ("enabled",)
    search_fields = ("public_id", "url", "team__slug", "team__public_id")
    list_select_related = ("team",)
    fields = (
        "public_id",
        "team",
        "url",
        "description",
        "events",
        "enabled",
        "disabled_reason",
        "secret_hint",
        "secret_rotated_at",
        "previous_secret_expires_at",
        "failing_since",
        "created_by",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "endpoint", "event", "attempt", "status", "http_status", "latency_ms", "created_at")
    list_filter = ("status", "manual")
    search_fields = ("public_id", "endpoint__public_id", "event__public_id")
    list_select_related = ("endpoint", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields]
