"""Delivering events: one HTTP POST per Delivery row, its outcome recorded on the row (the delivery log), and
the retry schedule.

A 2xx answered within TIMEOUT_SECONDS delivers the event. Anything else (another status, a redirect, a refused
or unreachable address, a timeout) is a failure: an automatic delivery is then retried as a new row after the
next delay of RETRY_DELAYS (stretched by up to JITTER, so endpoints that fail together do not retry in lockstep),
10 attempts over a little more than 3 days. An endpoint whose attempts have all failed for DISABLE_AFTER is
disabled and the team's owners are emailed. Redeliveries and test events are one attempt each.

Delivery is at least once: a row is claimed (pending → sending) before its POST and the outcome written after,
so a worker that dies in between leaves a `sending` row that the sweeper (webhooks.tasks) resends.

The HTTP client: httpx, never following redirects, ignoring proxy environment variables, one connection per
attempt, pinned to the address webhooks.safety checked, and a deadline over every socket operation so no
attempt outlives TIMEOUT_SECONDS however the receiver trickles its answer. Only the first
RESPONSE_BODY_LIMIT bytes of an answer are read. The secret is never logged; nor is the URL (it may carry a
token): logs name the endpoint's id.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from importlib import metadata

import httpcore
import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.services import audit
from config import metrics
from config.background import enqueue
from webhooks import safety, signing
from webhooks.models import Delivery, DeliveryStatus, Endpoint

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
RESPONSE_BODY_LIMIT = 1024
# Seconds to wait after failed attempt n (n = 1…9) before attempt n + 1: 1 min, 5 min, 30 min, 2 h, 5 h, 10 h,
# 10 h, 20 h, 25 h. The tenth attempt comes ≥ 72.6 h after the first, so a receiver down for 3 days sees ten.
DELIVER_TASK = "webhooks.tasks.deliver"  # by name: webhooks.tasks imports this module
RETRY_DELAYS = (60, 300, 1_800, 7_200, 18_000, 36_000, 36_000, 72_000, 90_000)
JITTER = 0.2
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)
DISABLE_AFTER = timedelta(days=3)


def user_agent() -> str:
    try:
        version = metadata.version("tollgate")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"Tollgate-Webhooks/{version}"


def retry_delay(failed_attempt: int) -> float:
    """Seconds before the attempt after `failed_attempt` (1-based), jitter included; never less than planned."""
    return RETRY_DELAYS[failed_attempt - 1] * (1 + random.random() * JITTER)


def queue_on_commit(delivery_ids: list[int], *, countdown: float = 0) -> None:
    """Hand the deliveries to the background runner once the transaction that wrote them commits."""

    def queue() -> None:
        for pk in delivery_ids:
            enqueue(DELIVER_TASK, pk, countdown=countdown)

    transaction.on_commit(queue)


# --- the HTTP exchange -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    http_status: int | None = None
    latency_ms: int | None = None
    body: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300 and not self.error


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, timeout: float | None, exc: type[Exception]) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise exc(f"no answer within {TIMEOUT_SECONDS:g} s")
        return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    """A socket whose every operation is bounded by the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        timeout = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked address whatever host the URL names (the URL keeps the name, so the Host header,
    TLS SNI and certificate verification are for the real host)."""

    def __init__(self, address: str, deadline: _Deadline) -> None:
        self._address, self._deadline, self._inner = address, deadline, httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            self._address,
            port,
            timeout=self._deadline.left(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _Stream(stream, self._deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks never use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)  # the certifi bundle, loaded once per process


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport over a pool built with the pinned backend (HTTPTransport takes no backend argument;
    everything it does goes through `_pool`)."""

    def __init__(self, address: str, deadline: _Deadline) -> None:  # no super().__init__(): it builds a pool too
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=_PinnedBackend(address, deadline),
        )


def post(target: safety.Target, address: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST `body` to `target` through `address`; never raises."""
    deadline = _Deadline(TIMEOUT_SECONDS)
    started = time.monotonic()
    status: int | None = None
    latency: int | None = None
    received = bytearray()
    try:
        with (
            httpx.Client(
                transport=_PinnedTransport(address, deadline),
                follow_redirects=False,
                trust_env=False,
                timeout=TIMEOUT_SECONDS,
            ) as client,
            client.stream("POST", target.url, content=body, headers=headers) as response,
        ):
            status = response.status_code
            latency = round((time.monotonic() - started) * 1000)
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= RESPONSE_BODY_LIMIT:
                    break
    except httpx.TimeoutException:
        if status is None:
            return Outcome(latency_ms=round((time.monotonic() - started) * 1000), error=_timed_out())
    except httpx.HTTPError as exc:  # connect refused or reset, TLS failure, malformed answer
        if status is None:
            return Outcome(latency_ms=round((time.monotonic() - started) * 1000), error=_describe(exc))
    except Exception as exc:  # a bug, not the receiver's doing: keep the attempt failed (and retried), say so
        log.exception("webhook POST failed unexpectedly")
        if status is None:
            return Outcome(error=f"Not sent: internal error ({type(exc).__name__}).")
    text = bytes(received[:RESPONSE_BODY_LIMIT]).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return Outcome(http_status=status, latency_ms=latency, body=text)


def _timed_out() -> str:
    return f"Timed out: no answer within {TIMEOUT_SECONDS:g} s."


def _describe(exc: httpx.HTTPError) -> str:
    kinds: dict[type[httpx.HTTPError], str] = {
        httpx.ConnectError: "Could not connect",
        httpx.RemoteProtocolError: "Invalid HTTP answer",
        httpx.ReadError: "Connection lost",
        httpx.WriteError: "Connection lost",
    }
    kind = kinds.get(type(exc), type(exc).__name__)
    detail = str(exc).strip()
    return f"{kind}: {detail}"[:300] if detail else f"{kind}."


def send(endpoint: Endpoint, event_body: str, *, event_id: str, event_type: str, attempt: int) -> Outcome:
    """Sign and POST one event to one endpoint, checking the address again first. No database writes."""
    secrets_in_use = endpoint.signing_secrets()
    if not secrets_in_use:
        return Outcome(error="The signing secret cannot be read (FIELD_ENCRYPTION_KEY changed?); rotate it.")
    try:
        target = safety.parse(endpoint.url)
        address = safety.resolve(target)
    except safety.UnsafeURL as exc:
        return Outcome(error=f"Not sent: {exc.message}"[:300])
    body = event_body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent(),
        "Accept-Encoding": "identity",
        "Tollgate-Event-Id": event_id,
        "Tollgate-Event-Type": event_type,
        "Tollgate-Delivery-Attempt": str(attempt),
        "Tollgate-Signature": signing.header(body, secrets_in_use, int(time.time())),
    }
    return post(target, address, body, headers)


# --- one attempt, start to finish --------------------------------------------------------------------------------


def attempt(delivery_id: int) -> str:
    """Run one Delivery row: claim it, send, record the outcome, schedule the retry. Returns what happened."""
    now = timezone.now()
    if not Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.SENDING, started_at=now
    ):
        return "skipped"  # done by another worker, cancelled, or gone with its endpoint
    row = Delivery.objects.select_related("endpoint", "event").filter(pk=delivery_id).first()
    if row is None:
        return "skipped"
    if not row.endpoint.enabled and not row.manual:
        Delivery.objects.filter(pk=row.pk).update(
            status=DeliveryStatus.CANCELLED, finished_at=now, error="Not sent: the endpoint is disabled."
        )
        return "cancelled"
    outcome = send(
        row.endpoint, row.event.body, event_id=row.event.public_id, event_type=row.event.type, attempt=row.attempt
    )
    log.info(
        "webhook delivery %s of %s to %s, attempt %s: %s",
        row.public_id,
        row.event.public_id,
        row.endpoint.public_id,
        row.attempt,
        outcome.http_status or outcome.error,
    )
    return record(row, outcome)


def record(row: Delivery, outcome: Outcome) -> str:
    metrics.webhook_deliveries.labels("delivered" if outcome.delivered else "failed").inc()
    now = timezone.now()
    with transaction.atomic():
        # The endpoint row lock orders this with redeliveries and other outcomes of the same endpoint.
        endpoint = Endpoint.objects.select_for_update().filter(pk=row.endpoint_id).first()
        if endpoint is None:
            return "gone"
        Delivery.objects.filter(pk=row.pk).update(
            status=DeliveryStatus.SUCCEEDED if outcome.delivered else DeliveryStatus.FAILED,
            finished_at=now,
            http_status=outcome.http_status,
            latency_ms=outcome.latency_ms,
            response_body=outcome.body,
            error=outcome.error[:300],
        )
        if outcome.delivered:
            if endpoint.failing_since is not None:
                Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
            return "delivered"
        failing_since = endpoint.failing_since or row.started_at or now
        if endpoint.failing_since is None:
            Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=failing_since)
        if endpoint.enabled and failing_since <= now - DISABLE_AFTER:
            _disable(endpoint, failing_since)
            return "failed; endpoint disabled"
        if row.manual or row.attempt >= MAX_ATTEMPTS or not endpoint.enabled:
            return "failed"
        delay = retry_delay(row.attempt)
        retry = Delivery.objects.create(
            endpoint=endpoint,
            event_id=row.event_id,
            attempt=next_attempt(endpoint.pk, row.event_id),
            scheduled_at=now + timedelta(seconds=delay),
        )
        queue_on_commit([retry.pk], countdown=delay)
        return f"failed; retry in {delay:.0f} s"


def next_attempt(endpoint_id: int, event_id: int) -> int:
    """Attempt numbers grow per (endpoint, event), redeliveries included. Call with the endpoint row locked."""
    last = Delivery.objects.filter(endpoint_id=endpoint_id, event_id=event_id).aggregate(n=Max("attempt"))["n"]
    return (last or 0) + 1


def _disable(endpoint: Endpoint, failing_since) -> None:
    reason = f"Every delivery failed from {failing_since:%Y-%m-%d %H:%M} UTC for 3 days."
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason=reason)
    Delivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING, manual=False).update(
        status=DeliveryStatus.CANCELLED, error="Not sent: the endpoint was disabled."
    )
    audit(
        "webhook.disabled",
        team=endpoint.team,
        actor_label="webhooks",
        target=endpoint.public_id,
        reason=reason,
    )
    team, endpoint_id, url = endpoint.team, endpoint.public_id, endpoint.url
    transaction.on_commit(lambda: _email_owners(team, endpoint_id, url, reason))


def _email_owners(team, endpoint_id: str, url: str, reason: str) -> None:
    recipients = list(
        Membership.objects.filter(team=team, role=Role.OWNER, user__is_active=True)
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    if not recipients:
        return
    context = {
        "team": team,
        "endpoint_id": endpoint_id,
        "url": url,
        "reason": reason,
        "webhooks_url": f"{settings.PUBLIC_BASE_URL}/t/{team.public_id}/settings/webhooks/{endpoint_id}/",
    }
    subject = render_to_string("emails/webhook_disabled_subject.txt", context).strip()
    body = render_to_string("emails/webhook_disabled.txt", context)
    send_mail(subject, body, None, recipients, fail_silently=True)


# --- the sweeper -------------------------------------------------------------------------------------------------

STALLED_AFTER = timedelta(minutes=5)  # far beyond any attempt (TIMEOUT_SECONDS): its worker died
LOST_AFTER = timedelta(minutes=2)  # a pending row this overdue lost its queued task (a restart, a lost message)
SWEEP_BATCH = 500


def requeue_stalled(*, now=None) -> int:
    """Queue again what a dead worker or a lost task left behind. The claim in attempt() makes a duplicate
    task harmless. Returns how many deliveries were queued."""
    now = now or timezone.now()
    Delivery.objects.filter(status=DeliveryStatus.SENDING, started_at__lt=now - STALLED_AFTER).update(
        status=DeliveryStatus.PENDING
    )
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, scheduled_at__lt=now - LOST_AFTER)
        .order_by("scheduled_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for pk in due:
        enqueue(DELIVER_TASK, pk)
    return len(due)
