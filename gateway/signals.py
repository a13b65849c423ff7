"""What the gateway announces to the layers above it (the dashboard listens; gateway never imports it)."""

from __future__ import annotations

from django.dispatch import Signal

# An image job changed status (sent after its transaction commits), with `job` (gateway.models.ImageJob).
image_job_changed = Signal()
