"""Asynchronous image jobs (POST /v1/images): from the submitted request to exactly one terminal status.

    pending ──claim──▶ processing ──▶ succeeded | failed | moderation_rejected
       │                   │  (worker died: back to pending, or failed)
       ├──▶ expired        └──▶ cancelled
       └──▶ cancelled

The pipeline places the hold (no process lease: it expires after HOLD_TTL_SECONDS, which outlives every
deadline below) and calls `ImageJobs.submit`, which runs `create` here: the job row and the idempotent reply
in one transaction, the work enqueued once it commits (config.background: Celery in production, this
process's worker thread in the embedded default). The worker (`run`) claims the job with a conditional
UPDATE, routes to a provider with fallbacks, stores the images and settles.

Every move to a terminal status is a conditional UPDATE (`WHERE status IN (…) AND attempts = …`) in the same
transaction as the hold's end (billing.settlement.record_sync for `succeeded`, release_sync otherwise), so a
job's hold ends exactly once however a cancel, the sweeper and a worker race. The periodic `sweep` expires
jobs nobody picked up by `start_by` and recovers jobs a crashed worker left processing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import pricing, settlement
from billing.money import json_number
from billing.settlement import Hold, ReceiptMeta
from config import background, metrics
from config.errors import ApiError
from gateway import idempotency, image_files, image_pricing
from gateway.models import OPEN_STATUSES, ImageJob, ImageJobStatus, ImageOutput
from gateway.providers.base import GeneratedImage, ImageResult, ModerationRejected
from gateway.signals import image_job_changed
from webhooks import events

log = logging.getLogger(__name__)

ENDPOINT = "images"
S = ImageJobStatus


# --- what a client sees ------------------------------------------------------------------------------------


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def estimate(*, model: str, n: int, price: image_pricing.ImagePrice, is_test: bool) -> dict:
    """The cost block of a job and the body of POST /v1/images/estimate: what the job would hold and cost."""
    total = n * price.unit_nusd
    return {
        "object": "estimate",
        "model": model,
        "n": n,
        "size": price.size,
        "quality": price.quality or None,
        "unit_price_usd": json_number(price.unit_nusd),
        "max_total_cost_usd": json_number(total),
        "hold_usd": json_number(0 if is_test else total),
        "is_test": is_test,
    }


def job_json(job: ImageJob, outputs: list[ImageOutput] | None = None) -> dict:
    price = image_pricing.ImagePrice(job.size, job.quality, job.unit_price_nusd)
    body: dict[str, Any] = {
        "id": job.public_id,
        "object": "image",
        "status": job.status,
        "model": job.model,
        "prompt": job.prompt,
        "size": job.size,
        "quality": job.quality or None,
        "style": job.style or None,
        "n": job.n,
        "test": job.is_test,
        "created_at": _unix(job.created_at),
        "started_at": _unix(job.started_at),
        "completed_at": _unix(job.completed_at),
        "expires_at": _unix(job.start_by) if job.status in OPEN_STATUSES else None,
        "cost": estimate(model=job.model, n=job.n, price=price, is_test=job.is_test),
        "receipt_id": job.receipt_id or None,
    }
    if job.status == S.SUCCEEDED:
        outputs = list(job.outputs.all()) if outputs is None else outputs
        body["output_urls"] = [image_files.url_for(o) for o in outputs]
        body["outputs_expire_at"] = _unix(outputs[0].expires_at) if outputs else None
        body["revised_prompts"] = [o.revised_prompt or None for o in outputs]
    if job.terminal:
        body["usage"] = {
            "images": job.images_produced,
            "unit_price_usd": json_number(job.unit_price_nusd),
            "total_cost_usd": json_number(job.total_cost_nusd),
            "receipt_id": job.receipt_id or None,
        }
    if job.error_code:
        body["error"] = {"code": job.error_code, "message": job.error_message}
    return body


def job_body(job: ImageJob, outputs: list[ImageOutput] | None = None) -> bytes:
    return orjson.dumps(job_json(job, outputs))


def _announce(job: ImageJob) -> None:
    """Tell the team the job changed. Runs inside the transaction that changed it: a terminal status is an
    `image.<status>` webhook event written in that transaction (so it exists exactly when the change does), and
    the dashboard's live update follows once it commits (dashboard.live listens to the signal)."""
    if job.terminal:
        events.emit(team_id=job.team_id, type=f"image.{job.status}", data=job_json(job))
        transaction.on_commit(lambda: metrics.image_jobs.labels(job.status).inc(), robust=True)
    transaction.on_commit(lambda: image_job_changed.send(sender=ImageJob, job=job), robust=True)


# --- submit (in the request) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """What the pipeline knows when it hands a job over (gateway.operations.images.ImageJobs.submit)."""

    public_id: str
    team_id: int
    key_id: int | None
    key_label: str
    is_test: bool
    request_id: str
    idempotency_key: str | None
    model: str
    prompt: str
    n: int
    price: image_pricing.ImagePrice
    style: str
    upstream_payload: dict
    hold: Hold
    price_version: str = ""
    max_cost_nusd: int | None = None


def create(sub: Submission) -> bytes:
    """One transaction: the job row and, with an Idempotency-Key, the stored reply; the work is enqueued once it
    commits. Returns the 202 body."""
    now = timezone.now()
    with transaction.atomic():
        job = ImageJob.objects.create(
            public_id=sub.public_id,
            team_id=sub.team_id,
            api_key_id=sub.key_id,
            key_label=sub.key_label[:60],
            is_test=sub.is_test,
            request_id=sub.request_id,
            idempotency_key=sub.idempotency_key or "",
            model=sub.model,
            prompt=sub.prompt,
            n=sub.n,
            size=sub.price.size,
            quality=sub.price.quality,
            style=sub.style,
            upstream_payload=orjson.dumps(sub.upstream_payload).decode(),
            hold_id=sub.hold.hold_id,
            hold_public_id=sub.hold.public_id or "",
            hold_amount_nusd=sub.hold.amount_nusd,
            hold_counted=sub.hold.counted,
            project_id=sub.hold.project_id,
            unit_price_nusd=sub.price.unit_nusd,
            price_version=sub.price_version,
            max_cost_nusd=sub.max_cost_nusd,
            created_at=now,
            start_by=now + timedelta(seconds=settings.IMAGE_JOB_TIMEOUT_SECONDS),
            hold_expires_at=settlement.hold_expiry(now),
        )
        body = job_body(job, [])
        if sub.idempotency_key is not None:
            idempotency.complete(
                team_id=sub.team_id,
                key=sub.idempotency_key,
                request_id=sub.request_id,
                status=202,
                body=body,
                content_type="application/json",
            )
        _announce(job)
        transaction.on_commit(lambda: _enqueue(job.public_id), robust=True)
    return body


def _enqueue(public_id: str) -> None:
    from gateway import tasks

    background.enqueue(tasks.run_image_job, public_id)


# --- reads and cancel (the API and the dashboard) ----------------------------------------------------------


def job_for_team(team_id: int, public_id: str) -> ImageJob:
    """The team's job, or 404 (the same for another team's id as for a missing one)."""
    job = (
        ImageJob.objects.filter(team_id=team_id, public_id=public_id).first() if public_id.startswith("img_") else None
    )
    if job is None:
        raise ApiError(404, "not_found", f"No image job '{public_id[:60]}'.", param="image_id")
    return job


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[ImageJob]
    has_more: bool


def page_for_team(team_id: int, *, limit: int, after: str | None = None, status: str | None = None) -> Page:
    """Newest first; `after` is the previous page's last job id."""
    jobs = ImageJob.objects.filter(team_id=team_id)
    if status and status not in S.values:
        raise ApiError(
            400, "invalid_request_error", f"Invalid value for 'status': one of {', '.join(S.values)}.", param="status"
        )
    if status:
        jobs = jobs.filter(status=status)
    if after:
        cursor = ImageJob.objects.filter(team_id=team_id, public_id=after).values("created_at", "pk").first()
        if cursor is None:
            raise ApiError(400, "invalid_request_error", f"No image job '{after[:60]}' in this team.", param="after")
        jobs = jobs.filter(created_at__lte=cursor["created_at"]).exclude(
            created_at=cursor["created_at"], pk__gte=cursor["pk"]
        )
    rows = list(jobs.prefetch_related("outputs").order_by("-created_at", "-pk")[: limit + 1])
    return Page(rows[:limit], len(rows) > limit)


def get_body(team_id: int, public_id: str) -> bytes:
    return job_body(job_for_team(team_id, public_id))


def list_body(team_id: int, *, limit: int, after: str | None, status: str | None) -> bytes:
    page = page_for_team(team_id, limit=limit, after=after, status=status)
    data = [job_json(job, list(job.outputs.all())) for job in page.jobs]
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }
    )


def cancel_body(ctx, public_id: str) -> bytes:
    """POST /v1/images/{id}/cancel with an API key (`ctx`, accounts.auth.KeyContext)."""
    return job_body(cancel(ctx.team_id, public_id, actor_label=f"key {ctx.name} ({ctx.masked})"))


def cancel(team_id: int, public_id: str, *, actor=None, actor_label: str = "") -> ImageJob:
    """Cancel a job that has not ended: its hold is released, nothing is charged. 409 for a finished job."""
    from accounts.services import audit

    job = job_for_team(team_id, public_id)
    if not job.terminal:
        with transaction.atomic():
            ended = _end(job, S.CANCELLED, code="cancelled", message="Cancelled at the client's request.")
            if ended is not None:
                audit(
                    "image.cancelled",
                    team=job.team,
                    actor=actor,
                    actor_label=actor_label,
                    target=job.public_id,
                    status_before=job.status,
                )
                return ended
        job.refresh_from_db()
    raise ApiError(
        409,
        "image_job_finished",
        f"Image job '{job.public_id}' has already ended ({job.status}); only a pending or processing job can be "
        "cancelled.",
        param="image_id",
        kind="invalid_request_error",
    )


# --- ending a job: exactly once, with its hold ------------------------------------------------------------


def _hold_of(job: ImageJob) -> Hold:
    return Hold(
        hold_id=job.hold_id,
        public_id=job.hold_public_id or None,
        team_id=job.team_id,
        key_id=job.api_key_id,
        request_id=job.request_id,
        amount_nusd=job.hold_amount_nusd,
        is_test=job.is_test,
        project_id=job.project_id,
        counted=job.hold_counted,
    )


def _meta(job: ImageJob, now: datetime) -> ReceiptMeta:
    return ReceiptMeta(
        endpoint=ENDPOINT,
        model_requested=job.model,
        model_routed=job.model,
        provider=job.provider,
        upstream_model=job.upstream_model,
        attempts=job.route_attempts,
        latency_ms=min(int((now - job.created_at).total_seconds() * 1000), 2**31 - 1),
        idempotency_key=job.idempotency_key,
        key_label=job.key_label,
        price_version=job.price_version,
        max_cost_nusd=job.max_cost_nusd,
    )


def _transition(job: ImageJob, status: str, now: datetime, *, from_statuses, **fields) -> bool:
    """The conditional UPDATE every terminal move goes through: only from `from_statuses`, and, for a job a
    worker holds, only for that worker's pick-up (`attempts`)."""
    rows = ImageJob.objects.filter(pk=job.pk, status__in=list(from_statuses))
    if job.status == S.PROCESSING:
        rows = rows.filter(attempts=job.attempts)
    if not rows.update(status=status, completed_at=now, **fields):
        return False
    job.status = status
    job.completed_at = now
    for name, value in fields.items():
        setattr(job, name, value)
    return True


def _end(
    job: ImageJob, status: str, *, code: str, message: str, now: datetime | None = None, billed=()
) -> ImageJob | None:
    """Move an unfinished job to a terminal status other than `succeeded` and release its hold (a zero-cost
    receipt, with the upstream cost of failed attempts upstream `billed`). None when the job had moved on
    meanwhile (nothing changed)."""
    now = now or timezone.now()
    with transaction.atomic():
        fields = {"error_code": code[:60], "error_message": message[:500]}
        if not _transition(job, status, now, from_statuses=(job.status,), **fields):
            return None
        receipt = settlement.release_sync(_hold_of(job), meta=_meta(job, now), error_code=status, billed=billed)
        ImageJob.objects.filter(pk=job.pk).update(receipt_id=receipt.public_id)
        job.receipt_id = receipt.public_id
        _announce(job)
    return job


def _succeed(
    job: ImageJob, images: list[GeneratedImage], now: datetime, *, upstream=None, billed=()
) -> ImageJob | None:
    """Store the images, then in one transaction: the status, the outputs and the settlement (images × unit
    price, never above the hold). None (files removed) when the job was cancelled or taken over meanwhile."""
    images = images[: job.n]  # never deliver, or charge for, more than was asked and held
    stored = image_files.write(images, team_id=job.team_id, request_id=job.request_id, now=now)
    try:
        with transaction.atomic():
            if not _transition(job, S.SUCCEEDED, now, from_statuses=(S.PROCESSING,), images_produced=len(images)):
                raise _Lost
            for output in stored:
                output.job = job
            ImageOutput.objects.bulk_create(stored)
            priced = settlement.price(
                _hold_of(job),
                usage=pricing.Usage(prompt_tokens=0, completion_tokens=0, images=len(images)),
                prices=pricing.Prices(input_nusd=0, output_nusd=0, image_nusd=job.unit_price_nusd),
                meta=_meta(job, now),
                upstream=upstream,
                billed=billed,
            )
            receipt = settlement.record_sync(priced)
            ImageJob.objects.filter(pk=job.pk).update(
                receipt_id=receipt.public_id, total_cost_nusd=receipt.total_cost_nusd
            )
            job.receipt_id, job.total_cost_nusd = receipt.public_id, receipt.total_cost_nusd
            _announce(job)
    except _Lost:
        image_files.discard(stored)
        return None
    except BaseException:
        image_files.discard(stored)
        raise
    return job


class _Lost(Exception):
    """The job was no longer this worker's to finish."""


# --- the worker --------------------------------------------------------------------------------------------


def _claim(public_id: str, now: datetime) -> ImageJob | None:
    """pending → processing, if still pending and not past its start-by time."""
    claimed = ImageJob.objects.filter(public_id=public_id, status=S.PENDING, start_by__gt=now).update(
        status=S.PROCESSING, started_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    job = ImageJob.objects.get(public_id=public_id)
    with transaction.atomic():
        _announce(job)
    return job


@dataclass(slots=True)
class Outcome:
    images: list[GeneratedImage] | None = None
    status: str = S.FAILED
    code: str = ""
    message: str = ""
    provider: str = ""
    upstream_model: str = ""
    attempts: int = 0
    route: object = None  # the RouteEntry that answered
    billed: list = field(default_factory=list)  # failed attempts upstream billed: [(RouteEntry, UpstreamUsage)]


def run(public_id: str) -> str:
    """The background task: claim, generate, settle. Returns the job's status (or why nothing was done)."""
    now = timezone.now()
    job = _claim(public_id, now)
    if job is None:
        job = ImageJob.objects.filter(public_id=public_id).first()
        if job is not None and job.status == S.PENDING and job.start_by <= now:
            _expire(job, now)
            return S.EXPIRED
        return "not_pending"
    outcome = generate(job)
    ImageJob.objects.filter(pk=job.pk, attempts=job.attempts).update(
        provider=outcome.provider[:120], upstream_model=outcome.upstream_model[:200], route_attempts=outcome.attempts
    )
    job.provider, job.upstream_model, job.route_attempts = outcome.provider, outcome.upstream_model, outcome.attempts
    finished = timezone.now()
    billed = [bill for route, usage in outcome.billed if (bill := _bill(job, route, usage)) is not None]
    if outcome.images is not None:
        ended = _succeed(job, outcome.images, finished, upstream=_upstream(job, outcome.route), billed=billed)
    else:
        ended = _end(job, outcome.status, code=outcome.code, message=outcome.message, now=finished, billed=billed)
    if ended is None:
        log.info("image job %s changed while it ran (cancelled or taken over); its result was dropped", public_id)
        return "dropped"
    return ended.status


def _upstream(job: ImageJob, route) -> settlement.UpstreamPrices | None:
    """What the serving route charges per image of the job's size, at its cost version of the job's hold."""
    from gateway.operations.images import image_cost

    entry = route.cost_at(job.created_at) if route is not None and not job.is_test else None
    return None if entry is None else image_cost(entry, job.size, job.quality or None)


def _bill(job: ImageJob, route, usage) -> settlement.UpstreamBill | None:
    upstream = _upstream(job, route)
    if upstream is None:
        return None
    return settlement.UpstreamBill(
        pricing.Usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens), upstream
    )


def _routes(job: ImageJob):
    from gateway import fallback
    from gateway.catalog import RouteEntry, order_routes, snapshot
    from gateway.models import ModelKind

    snap = snapshot()
    model = snap.models.get(job.model)
    if model is None or model.kind != ModelKind.IMAGE:
        return None
    if job.is_test:
        sim = snap.simulator
        return [RouteEntry(0, sim.name, model.id, "primary", 0, 1, True, sim)]
    routes = order_routes(model.routes)
    return routes if any(fallback.breakers.healthy(r) for r in routes) else []


def generate(job: ImageJob) -> Outcome:
    """Route to a provider with fallbacks (the same rules as a request's), within IMAGE_JOB_RUN_SECONDS."""
    from gateway import fallback

    routes = _routes(job)
    if not routes:
        return Outcome(
            code="model_unavailable", message=f"The model '{job.model}' has no available upstream right now."
        )
    payload = orjson.loads(job.upstream_payload)

    async def attempt(provider, route) -> ImageResult | ModerationRejected:
        try:
            return await provider.images(payload, upstream_model=route.upstream_model)
        except ModerationRejected as exc:  # the prompt's fault: an answer, not a failure to fall back from
            return exc

    async def go():
        from gateway.providers.http import close_session

        try:
            async with asyncio.timeout(settings.IMAGE_JOB_RUN_SECONDS):
                return await fallback.call(routes, attempt, use_breakers=not job.is_test)
        finally:
            await close_session()

    try:
        routed = asyncio.run(go())
    except fallback.RoutingFailed as exc:
        route = exc.route
        return Outcome(
            code=exc.code,
            message=exc.message,
            provider=route.provider if route else "",
            upstream_model=route.upstream_model if route else "",
            attempts=exc.attempts,
            billed=exc.billed,
        )
    except TimeoutError:
        return Outcome(code="upstream_timeout", message="The image took longer than this job may run.")
    except Exception:
        log.exception("image job %s failed", job.public_id)
        return Outcome(code="internal_error", message="The server had an error while generating the image.")
    where = {
        "provider": routed.route.provider,
        "upstream_model": routed.route.upstream_model,
        "attempts": routed.attempts,
        "route": routed.route,
        "billed": routed.billed,
    }
    if isinstance(routed.value, ModerationRejected):
        return Outcome(
            status=S.MODERATION_REJECTED, code="content_policy_violation", message=routed.value.message, **where
        )
    images = routed.value.images
    if not images:
        return Outcome(code="upstream_error", message="The upstream provider returned no image.", **where)
    return Outcome(images=images, status=S.SUCCEEDED, **where)


# --- the sweep: deadlines and crashed workers ------------------------------------------------------------


def _expire(job: ImageJob, now: datetime) -> ImageJob | None:
    return _end(
        job,
        S.EXPIRED,
        code="expired",
        message=f"No worker picked the job up within {settings.IMAGE_JOB_TIMEOUT_SECONDS} s.",
        now=now,
    )


def _stuck_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.IMAGE_JOB_RUN_SECONDS + settings.IMAGE_JOB_GRACE_SECONDS)


def _recover(job: ImageJob, now: datetime) -> str:
    """A job processing longer than any worker may run: its worker died. Run it again if there is time left
    before its hold expires (and pick-ups left), else fail it; either way its hold ends exactly once."""
    run_for = settings.IMAGE_JOB_RUN_SECONDS + settings.IMAGE_JOB_GRACE_SECONDS + settings.IMAGE_JOB_SWEEP_SECONDS
    start_by = min(
        now + timedelta(seconds=settings.IMAGE_JOB_TIMEOUT_SECONDS), job.hold_expires_at - timedelta(seconds=run_for)
    )
    if job.attempts < settings.IMAGE_JOB_MAX_ATTEMPTS and start_by > now:
        reset = ImageJob.objects.filter(pk=job.pk, status=S.PROCESSING, attempts=job.attempts).update(
            status=S.PENDING, start_by=start_by, started_at=None
        )
        if reset:
            log.warning("image job %s: its worker stopped; running it again", job.public_id)
            job.status, job.start_by, job.started_at = S.PENDING, start_by, None
            with transaction.atomic():
                _announce(job)
            _enqueue(job.public_id)
            return "retried"
        return "moved_on"
    ended = _end(job, S.FAILED, code="worker_lost", message="The worker generating this image stopped.", now=now)
    return "failed" if ended else "moved_on"


def sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Expire pending jobs past their start-by time; recover jobs a crashed worker left processing."""
    now = now or timezone.now()
    counts = {"expired": 0, "retried": 0, "failed": 0}
    for job in ImageJob.objects.filter(status=S.PENDING, start_by__lte=now).order_by("start_by")[:limit]:
        if _expire(job, now) is not None:
            counts["expired"] += 1
    for job in ImageJob.objects.filter(status=S.PROCESSING, started_at__lte=_stuck_before(now)).order_by("started_at")[
        :limit
    ]:
        outcome = _recover(job, now)
        if outcome in counts:
            counts[outcome] += 1
    if any(counts.values()):
        log.info("image job sweep: %s", counts)
    return counts


# --- from the dashboard: a signed-in member generates, paying from the team's wallet or in test mode ---------


async def asubmit_for_member(team, user, *, mode: str, fields: dict, client_ip: str | None = None) -> dict:
    """POST /v1/images on behalf of a member (the dashboard's generate form): the same pipeline, rate limits,
    hold and job as an API call, with the member in place of an API key. `mode` "test" runs on the simulator
    and moves no money, like a test key. Returns the job; raises ApiError as the API would."""
    from accounts.auth import KeyContext
    from config.ids import request_id as new_request_id
    from gateway import pipeline
    from gateway.operations.base import Call
    from gateway.operations.images import ImageJobs

    ctx = KeyContext(
        key_id=None,  # no key: receipts show the member instead
        public_id="",
        name="Dashboard",
        masked=user.email,
        team_id=team.pk,
        team_public_id=team.public_id,
        team_plan=team.plan,
        mode="test" if mode == "test" else "live",
        scopes=frozenset({pipeline.INFERENCE}),
        allowed_models=(),
        rpm_limit=None,
        tpm_limit=None,
        monthly_spend_cap_nusd=None,
        grace_ends_at=None,
    )
    call = Call(
        op=ImageJobs(),
        request_id=new_request_id(),
        started=time.perf_counter(),
        headers={},
        body=orjson.dumps(fields),
        client_ip=client_ip,
        ctx=ctx,
    )
    reply = await pipeline.run(call)
    assert reply is not None
    return orjson.loads(reply.body)
