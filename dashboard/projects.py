"""Projects: a team's keys grouped under a monthly budget of their own (accounts.projects), each with its usage page.
Every member who sees usage sees them; owners and admins create, change and delete them."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.utils import timezone

from accounts import projects as project_services
from accounts.access import TeamAccess, project_in_team
from accounts.auth import client_ip_from_request as client_ip
from accounts.models import ApiKey
from accounts.permissions import Action
from accounts.services import AccountsError, PermissionDenied
from billing import money, spend
from billing.settlement import month_start
from dashboard import charts
from dashboard.common import forbidden, page, team_page
from dashboard.forms import ProjectForm, UsageRangeForm
from dashboard.templatetags.dashboard_tags import usd
from dashboard.usage import default_mode, usage_report

FORM_FIELDS = {"monthly_budget_nusd": "monthly_budget_usd"}


def _add_error(form, exc: AccountsError) -> None:
    field = FORM_FIELDS.get(getattr(exc, "field", ""), getattr(exc, "field", None))
    form.add_error(field if field in form.fields else None, exc.message)


def _month(project) -> dict:
    """This month as the budget sees it: settled spend plus open holds (the counter the holds move)."""
    used = spend.used_this_month("project", project.pk)
    budget = project.monthly_budget_nusd
    return {
        "used_nusd": used,
        "budget_nusd": budget,
        "left_nusd": None if budget is None else max(0, budget - used),
        "percent": None if not budget else min(100, round(100 * used / budget)),
        "since": month_start(timezone.now()),
    }


def _list_page(request, access: TeamAccess, *, form=None, status=200):
    rows = [
        {"project": p, "month": _month(p), "keys": ApiKey.objects.filter(project=p, revoked_at=None).count()}
        for p in project_services.list_projects(access.team)
    ]
    ctx = {
        "rows": rows,
        "form": form or ProjectForm(),
        "can_manage": access.can(Action.PROJECTS_MANAGE),
        "open_create": form is not None and bool(form.errors),
    }
    return page(request, "dashboard/projects.html", access, "projects", ctx, status=status)


@team_page(Action.USAGE_VIEW, methods=("GET", "POST"))
def projects(request, access: TeamAccess):
    if request.method == "GET":
        return _list_page(request, access)
    if not access.can(Action.PROJECTS_MANAGE):
        return forbidden(request, access, "Owners and admins create projects.")
    form = ProjectForm(request.POST)
    if not form.is_valid():
        return _list_page(request, access, form=form, status=400)
    try:
        project = project_services.create_project(
            actor=request.user,
            team=access.team,
            name=form.cleaned_data["name"],
            monthly_budget_nusd=form.cleaned_data["monthly_budget_usd"],
            ip=client_ip(request),
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        _add_error(form, exc)
        return _list_page(request, access, form=form, status=400)
    messages.success(request, f"Project “{project.name}” created. Give it keys on the API keys page.")
    return redirect("dashboard:project", team_id=access.team.public_id, project_id=project.public_id)


def _detail_page(request, access: TeamAccess, project, *, form=None, status=200):
    data = request.GET.copy()
    if not (data.get("range") or data.get("start") or data.get("end")):
        data["range"] = "30"
    range_form = UsageRangeForm(data)
    report = None
    if range_form.is_valid():
        d = range_form.cleaned_data
        mode = d["mode"] or default_mode(access.team, d["start"], d["end"])
        report = usage_report(access.team, d["start"], d["end"], mode, project=project)
    ctx = {
        "project": project,
        "month": _month(project),
        "keys": ApiKey.objects.filter(project=project).order_by("-created_at"),
        "range_form": range_form,
        "report": report,
        "can_manage": access.can(Action.PROJECTS_MANAGE),
        "form": form
        or ProjectForm(
            initial={
                "name": project.name,
                "monthly_budget_usd": None
                if project.monthly_budget_nusd is None
                else money.exact(project.monthly_budget_nusd),
            }
        ),
    }
    if report is not None:
        ctx["spend_chart"] = charts.bar_chart(report.days, "cost_nusd", usd, title="Spend per day")
        ctx["key_chart"] = charts.hbar_chart(report.by_key, "cost_nusd", usd, title="Spend by key")
    return page(request, "dashboard/project.html", access, "projects", ctx, status=status if report else 400)


@team_page(Action.USAGE_VIEW, methods=("GET", "POST"))
def project_detail(request, access: TeamAccess, project_id: str):
    project = project_in_team(access, project_id)
    if request.method == "GET":
        return _detail_page(request, access, project)
    if not access.can(Action.PROJECTS_MANAGE):
        return forbidden(request, access, "Owners and admins change projects.")
    form = ProjectForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, access, project, form=form, status=400)
    try:
        project_services.update_project(
            project,
            actor=request.user,
            name=form.cleaned_data["name"],
            monthly_budget_nusd=form.cleaned_data["monthly_budget_usd"],
            ip=client_ip(request),
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        _add_error(form, exc)
        return _detail_page(request, access, project, form=form, status=400)
    messages.success(request, "Project saved. A new budget applies to requests from now on.")
    return redirect("dashboard:project", team_id=access.team.public_id, project_id=project.public_id)


@team_page(Action.USAGE_VIEW, methods=("POST",))
def project_delete(request, access: TeamAccess, project_id: str):
    project = project_in_team(access, project_id)
    if not access.can(Action.PROJECTS_MANAGE):
        return forbidden(request, access, "Owners and admins delete projects.")
    try:
        project_services.delete_project(project, actor=request.user, ip=client_ip(request))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:project", team_id=access.team.public_id, project_id=project.public_id)
    messages.success(request, f"Project “{project.name}” deleted. Its receipts stay in the team's usage.")
    return redirect("dashboard:projects", team_id=access.team.public_id)
