"""The Images page: a team's image jobs newest first, a job's outputs and receipt, and a generate form.

Jobs are read through the team door (accounts.access); generating goes through the same pipeline as
POST /v1/images (gateway.image_jobs.asubmit_for_member), paid from the team's wallet or in test mode.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect

from accounts.access import TeamAccess
from accounts.permissions import Action
from accounts.services import audit
from billing.models import Receipt
from config.errors import ApiError
from config.net import client_ip_from_request
from dashboard.common import forbidden, page, team_page
from dashboard.forms import ImageGenerateForm
from gateway import image_files, image_jobs
from gateway.catalog import list_models
from gateway.models import ImageJob, ImageJobStatus, ModelKind

PAGE_SIZE = 25


def _image_models() -> list:
    return [m for m in list_models() if m.kind == ModelKind.IMAGE]


def _thumbs(jobs) -> dict[int, str]:
    """The first output's link per succeeded job (rendered as the row's thumbnail)."""
    out = {}
    for job in jobs:
        outputs = list(job.outputs.all())
        if job.status == ImageJobStatus.SUCCEEDED and outputs:
            out[job.pk] = image_files.path_for(outputs[0])
    return out


@team_page(Action.USAGE_VIEW, methods=("GET", "POST"))
def images(request, access: TeamAccess):
    team = access.team
    can_generate = access.can(Action.IMAGES_GENERATE)
    models = _image_models()
    form = ImageGenerateForm(request.POST or None, models=models)
    if request.method == "POST":
        if not can_generate:
            return forbidden(request, access)
        if form.is_valid():
            data = form.cleaned_data
            fields = {"model": data["model"], "prompt": data["prompt"], "n": data["n"], "size": data["size"]}
            if data.get("quality"):
                fields["quality"] = data["quality"]
            try:
                job = async_to_sync(image_jobs.asubmit_for_member)(
                    team, request.user, mode=data["mode"], fields=fields, client_ip=client_ip_from_request(request)
                )
            except ApiError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                audit(
                    "image.generated",
                    team=team,
                    actor=request.user,
                    target=job["id"],
                    ip=client_ip_from_request(request),
                    mode=data["mode"],
                    model=data["model"],
                )
                messages.success(request, "Image job started.")
                return redirect("dashboard:image", team_id=team.public_id, image_id=job["id"])
    jobs = ImageJob.objects.filter(team=team).prefetch_related("outputs").order_by("-created_at", "-pk")
    status = request.GET.get("status") or ""
    if status in ImageJobStatus.values:
        jobs = jobs.filter(status=status)
    jobs_page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {
        "jobs": jobs_page,
        "thumbs": _thumbs(jobs_page),
        "form": form,
        "can_generate": can_generate,
        "has_models": bool(models),
        "statuses": ImageJobStatus.choices,
        "status": status,
    }
    return page(request, "dashboard/images.html", access, "images", ctx, status=400 if form.errors else 200)


@team_page(Action.USAGE_VIEW)
def image_detail(request, access: TeamAccess, image_id: str):
    job = ImageJob.objects.filter(team=access.team, public_id=image_id).first()
    if job is None:
        raise Http404("No such image job.")
    outputs = list(job.outputs.all())
    receipt = Receipt.objects.filter(team=access.team, public_id=job.receipt_id).first() if job.receipt_id else None
    ctx = {
        "job": job,
        "outputs": [(o, image_files.path_for(o)) for o in outputs],
        "receipt": receipt,
        "can_cancel": access.can(Action.IMAGES_GENERATE) and not job.terminal,
        "can_see_receipt": access.can(Action.BILLING_VIEW),
        "api": image_jobs.job_json(job, outputs),
    }
    return page(request, "dashboard/image.html", access, "images", ctx)


@team_page(Action.IMAGES_GENERATE, methods=("POST",))
def image_cancel(request, access: TeamAccess, image_id: str):
    try:
        image_jobs.cancel(access.team.pk, image_id, actor=request.user)
    except ApiError as exc:
        if exc.status == 404:
            raise Http404("No such image job.") from None
        messages.error(request, exc.message)
    else:
        messages.success(request, "Image job cancelled; its hold was released.")
    return redirect("dashboard:image", team_id=access.team.public_id, image_id=image_id)
