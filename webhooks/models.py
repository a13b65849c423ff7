"""Events (what changed in a team, stored in the transaction of the change), the team's webhook endpoints and
every attempt to deliver an event to one (the delivery log)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from config import crypto
from config.ids import new_id

SECRET_PURPOSE = "webhook-signing-secret"


def _event_id() -> str:
    return new_id("evt")


def _endpoint_id() -> str:
    return new_id("we")


def _delivery_id() -> str:
    return new_id("dlv")


class Event(models.Model):
    """One change, as customers see it. `body` is the JSON written once at creation: every delivery sends these
    exact bytes (so every attempt is signed over the same body) and /v1/events returns them."""

    public_id = models.CharField(max_length=40, unique=True, default=_event_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=64)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["team", "-id"], name="event_team_newest"),
            models.Index(fields=["team", "type", "-id"], name="event_team_type_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"


class Endpoint(models.Model):
    """An HTTPS URL of a team that receives signed events. The signing secret is stored encrypted (deliveries
    need it to sign) and shown once, at creation and at rotation; after a rotation the previous secret keeps
    signing too until `previous_secret_expires_at`."""

    public_id = models.CharField(max_length=40, unique=True, default=_endpoint_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField(max_length=2048)
    description = models.CharField(max_length=300, blank=True)
    events = models.JSONField(default=list, help_text='Event types, or ["*"] for every type.')
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, help_text="Why Tollgate switched it off.")
    secret_encrypted = models.TextField(editable=False)
    secret_hint = models.CharField(max_length=16, editable=False, help_text="whsec_… and the last 4 characters.")
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="First failed attempt of the current run of failures (none: healthy)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return f"{self.public_id} {self.url}"

    def subscribes_to(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def grace_ends_at(self, now: datetime | None = None) -> datetime | None:
        """When the previous secret stops signing, while it still does."""
        now = now or timezone.now()
        if self.previous_secret_encrypted and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            return self.previous_secret_expires_at
        return None

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets to sign with now: the current one, then the previous one during its grace window.
        A secret that no longer decrypts (FIELD_ENCRYPTION_KEY changed) is left out."""
        found = [crypto.decrypt(self.secret_encrypted, purpose=SECRET_PURPOSE)]
        if self.grace_ends_at(now):
            found.append(crypto.decrypt(self.previous_secret_encrypted, purpose=SECRET_PURPOSE))
        return [s for s in found if s]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Scheduled"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Not sent"  # the endpoint was disabled before the attempt was due


class Delivery(models.Model):
    """One attempt to deliver one event to one endpoint. A failed automatic attempt schedules the next one as
    a new row (attempt + 1), so the rows of an (endpoint, event) pair are its whole history; a pending row is
    the outbox: it is written in the transaction of the change, so a committed change is always delivered."""

    public_id = models.CharField(max_length=40, unique=True, default=_delivery_id, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField(default=1)
    manual = models.BooleanField(default=False, help_text="A redelivery or a test event: one attempt, no retries.")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    scheduled_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 1 KB of the response body.")
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="delivery_endpoint_newest"),
            models.Index(fields=["status", "scheduled_at"], name="delivery_due"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event", "attempt"], name="one_delivery_per_attempt"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} #{self.attempt} {self.status}"
