"""POST /billing/stripe/webhook/: verify Stripe's signature over the raw body, then hand the event to
billing.topups.process_event (which stores the event id and acts in one transaction)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import stripe_client, topups

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = stripe_client.construct_event(request.body, request.headers.get("Stripe-Signature"))
    except stripe_client.SignatureError as exc:
        log.warning("refused a Stripe webhook: %s", exc)
        return JsonResponse({"error": str(exc)}, status=400)
    outcome = topups.process_event(event)
    return JsonResponse(
        {"received": True, "status": outcome.status, "detail": outcome.detail}, status=outcome.http_status
    )
