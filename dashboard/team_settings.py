"""Team settings: rename and data retention (owners and admins), transfer ownership and delete (owners),
leave (anyone but the last owner). Each POST checks the role, validates, then calls one accounts service."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect

from accounts import services as account_services
from accounts.access import TeamAccess
from accounts.models import Membership
from accounts.permissions import Action
from accounts.services import AccountsError, PermissionDenied
from config.net import client_ip_from_request as client_ip
from dashboard.common import forbidden, is_only_owner, page, team_page
from dashboard.forms import DeleteTeamForm, TeamSettingsForm, TransferOwnershipForm


def _others(access: TeamAccess, user) -> list[Membership]:
    return list(
        Membership.objects.filter(team=access.team).exclude(user=user).select_related("user").order_by("user__email")
    )


def _settings_page(
    request, access: TeamAccess, *, settings_form=None, transfer_form=None, delete_form=None, status: int = 200
):
    team = access.team
    others = _others(access, request.user)
    ctx = {
        "settings_form": settings_form
        or TeamSettingsForm(initial={"name": team.name, "store_completions": team.store_completions}),
        "transfer_form": transfer_form or TransferOwnershipForm(members=others),
        "delete_form": delete_form or DeleteTeamForm(slug=team.slug),
        "has_others": bool(others),
        "can_edit": access.can(Action.TEAM_SETTINGS),
        "can_transfer": access.can(Action.TEAM_TRANSFER),
        "can_delete": access.can(Action.TEAM_DELETE),
        "open_delete": delete_form is not None and bool(delete_form.errors),
        "only_owner": is_only_owner(access),
    }
    return page(request, "dashboard/team_settings.html", access, "settings", ctx, status=status)


def _back(access: TeamAccess):
    return redirect("dashboard:team_settings", team_id=access.team.public_id)


@team_page(methods=("GET", "POST"))
def team_settings(request, access: TeamAccess):
    if request.method == "GET":
        return _settings_page(request, access)
    if not access.can(Action.TEAM_SETTINGS):
        return forbidden(request, access, "Only owners and admins can change the team's settings.")
    form = TeamSettingsForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, access, settings_form=form, status=400)
    try:
        account_services.update_team_settings(
            actor=request.user, team=access.team, ip=client_ip(request), **form.cleaned_data
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        form.add_error(None, exc.message)
        return _settings_page(request, access, settings_form=form, status=400)
    messages.success(request, "Team settings saved.")
    return _back(access)


@team_page(methods=("POST",))
def team_transfer(request, access: TeamAccess):
    if not access.can(Action.TEAM_TRANSFER):
        return forbidden(request, access, "Only an owner can transfer ownership.")
    form = TransferOwnershipForm(request.POST, members=_others(access, request.user))
    if not form.is_valid():
        return _settings_page(request, access, transfer_form=form, status=400)
    to = get_object_or_404(
        Membership.objects.select_related("user"), team=access.team, pk=form.cleaned_data["membership"]
    )
    try:
        account_services.transfer_ownership(actor=request.user, team=access.team, to=to, ip=client_ip(request))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        form.add_error(None, exc.message)
        return _settings_page(request, access, transfer_form=form, status=400)
    messages.success(request, f"{to.user.email} now owns {access.team.name}; you are an admin.")
    return _back(access)


@team_page(methods=("POST",))
def team_delete(request, access: TeamAccess):
    if not access.can(Action.TEAM_DELETE):
        return forbidden(request, access, "Only an owner can delete the team.")
    form = DeleteTeamForm(request.POST, slug=access.team.slug)
    if not form.is_valid():
        return _settings_page(request, access, delete_form=form, status=400)
    name = access.team.name
    try:
        account_services.delete_team(actor=request.user, team=access.team, ip=client_ip(request))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        form.add_error(None, exc.message)
        return _settings_page(request, access, delete_form=form, status=400)
    request.session.pop("last_team", None)
    messages.success(request, f"Team “{name}” was deleted.")
    return redirect("dashboard:home")


@team_page(methods=("POST",))
def team_leave(request, access: TeamAccess):
    mine = Membership.objects.select_related("user", "team").get(team=access.team, user=request.user)
    try:
        account_services.remove_member(actor=request.user, membership=mine, ip=client_ip(request))
    except AccountsError as exc:  # the last owner: the service says why
        messages.error(request, exc.message)
        return _settings_page(request, access, status=400)
    request.session.pop("last_team", None)
    messages.success(request, f"You left {access.team.name}.")
    return redirect("dashboard:home")
