"""Server-rendered pages: look the team up through accounts.access, check the role, call one service, render.

Billing, receipts and usage pages live in dashboard/reports.py.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts import keys as key_services
from accounts import services as account_services
from accounts.access import TeamAccess, teams_for_user
from accounts.keys import KeyActor
from accounts.models import ApiKey, Invitation, Membership, Role
from accounts.permissions import Action, can_assign
from accounts.projects import list_projects
from accounts.services import AccountsError, PermissionDenied
from billing import money
from billing.models import Receipt
from billing.settlement import month_start
from config.net import client_ip_from_request as client_ip
from dashboard import catalog
from dashboard.common import forbidden, is_only_owner, page, team_page
from dashboard.forms import (
    InvitationSignupForm,
    InviteForm,
    KeyCreateForm,
    KeyLimitsForm,
    KeyRotateForm,
    RoleForm,
    TeamCreateForm,
)

NO_STORE = "no-store, max-age=0"


# --- entry points -----------------------------------------------------------------------------------


def home(request):
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    teams = teams_for_user(request.user)
    if not teams:
        return redirect("dashboard:team_create")
    last = request.session.get("last_team")
    chosen = next((t for t in teams if t.team.public_id == last), teams[0])
    return redirect("dashboard:overview", team_id=chosen.team.public_id)


@login_required
@require_http_methods(["GET", "POST"])
def team_create(request):
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = account_services.create_team(
            name=form.cleaned_data["name"],
            owner=request.user,
            ip=client_ip(request),
            origin=account_services.TeamOrigin.DASHBOARD,
        )
        messages.success(request, f"Team “{team.name}” created.")
        return redirect("dashboard:overview", team_id=team.public_id)
    return render(request, "dashboard/team_create.html", {"form": form}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def invitation_accept(request, token: str):
    invitation = account_services.find_invitation(token)
    ctx = {"invitation": invitation, "token": token}
    if invitation is None or invitation.status != "pending":
        ctx["problem"] = account_services.invitation_problem(invitation)
        return render(request, "dashboard/invitation.html", ctx, status=404 if invitation is None else 410)
    user = request.user
    if user.is_authenticated:
        if request.method == "POST":
            try:
                membership = account_services.accept_invitation(token=token, user=user, ip=client_ip(request))
            except AccountsError as exc:
                ctx["problem"] = exc.message
                return render(request, "dashboard/invitation.html", ctx, status=400)
            messages.success(request, f"You joined {membership.team.name}.")
            return redirect("dashboard:overview", team_id=membership.team.public_id)
        ctx["wrong_user"] = user.email.lower() != invitation.email.lower()
        return render(request, "dashboard/invitation.html", ctx)
    from accounts.models import User

    ctx["has_account"] = User.objects.filter(email__iexact=invitation.email).exists()
    form = InvitationSignupForm(request.POST or None, email=invitation.email)
    ctx["form"] = form
    if request.method == "POST" and not ctx["has_account"] and form.is_valid():
        try:
            membership = account_services.sign_up_with_invitation(
                token=token,
                password=form.cleaned_data["password1"],
                name=form.cleaned_data["name"],
                ip=client_ip(request),
            )
        except AccountsError as exc:
            ctx["problem"] = exc.message
            return render(request, "dashboard/invitation.html", ctx, status=400)
        _mark_email_verified(membership.user)  # the emailed token proved the address
        login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to {membership.team.name}.")
        return redirect("dashboard:overview", team_id=membership.team.public_id)
    return render(request, "dashboard/invitation.html", ctx, status=400 if form.errors else 200)


def _mark_email_verified(user) -> None:
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(user=user, email=user.email, defaults={"verified": True, "primary": True})


# --- overview ---------------------------------------------------------------------------------------


@team_page()
def overview(request, access: TeamAccess):
    team = access.team
    request.session["last_team"] = team.public_id
    now = timezone.now()
    receipts = Receipt.objects.filter(team=team)
    month = receipts.filter(created_at__gte=month_start(now), is_test=False).aggregate(spend=Sum("total_cost_nusd"))
    ctx = {
        "wallet": getattr(team, "wallet", None) if access.can(Action.BILLING_VIEW) else None,
        "month_spend_nusd": month["spend"] or 0,
        "requests_today": receipts.filter(created_at__date=timezone.localdate()).count(),
        "active_keys": ApiKey.objects.filter(team=team, revoked_at=None).count(),
        "recent": receipts.select_related("api_key")[:8],
        "has_request": receipts.exists(),
        "base_url": f"{settings.PUBLIC_BASE_URL}/v1",
    }
    return page(request, "dashboard/overview.html", access, "overview", ctx)


# --- API keys ---------------------------------------------------------------------------------------


FORM_FIELD = {
    "monthly_spend_cap_nusd": "monthly_spend_cap_usd",
    "max_cost_per_request_nusd": "max_cost_per_request_usd",
    "expires_at": "expires_on",
}


def _project_choices(team) -> list[tuple[str, str]]:
    return [(p.public_id, p.name) for p in list_projects(team)]


def _key_actor(request, access: TeamAccess) -> KeyActor:
    return KeyActor(team=access.team, user=request.user, role=access.role, ip=client_ip(request))


def _may_manage(actor: KeyActor, key: ApiKey) -> bool:
    try:
        actor.require_manage(key)  # the keys service's rule: admins all keys, developers their own
    except PermissionDenied:
        return False
    return True


def _add_service_error(form, exc: AccountsError) -> None:
    field = FORM_FIELD.get(getattr(exc, "field", ""), getattr(exc, "field", None))
    form.add_error(field if field in form.fields else None, exc.message)


def _key_rows(request, access: TeamAccess):
    team = access.team
    actor = _key_actor(request, access)
    keys = list(key_services.list_keys(actor))
    spend = dict(
        Receipt.objects.filter(team=team, is_test=False, created_at__gte=month_start(timezone.now()))
        .values_list("api_key_id")
        .annotate(s=Sum("total_cost_nusd"))
        .values_list("api_key_id", "s")
    )
    now = timezone.now()
    return [
        {
            "key": k,
            "status": k.status(now),
            "grace_ends_at": key_services.grace_ends_at(k, now),
            "spend_nusd": spend.get(k.pk, 0),
            "can_manage": _may_manage(actor, k),
        }
        for k in keys
    ]


def _keys_page(request, access, *, create_form=None, minted=None, rotated=None, status=200):
    ctx = {
        "rows": _key_rows(request, access),
        "create_form": create_form
        or KeyCreateForm(model_choices=catalog.model_choices(), project_choices=_project_choices(access.team)),
        "rotate_form": KeyRotateForm(),
        "can_create": access.can(Action.KEYS_MANAGE_OWN),
        "open_create": create_form is not None and bool(create_form.errors),
        "minted": minted,
        "rotated": rotated,
    }
    response = page(request, "dashboard/keys.html", access, "keys", ctx, status=status)
    if minted or rotated:
        response["Cache-Control"] = NO_STORE  # the plaintext is in this response only
    return response


@team_page(Action.KEYS_VIEW)
def keys(request, access: TeamAccess):
    return _keys_page(request, access)


@team_page(Action.KEYS_VIEW, methods=("POST",))
def key_create(request, access: TeamAccess):
    if not access.can(Action.KEYS_MANAGE_OWN):
        return forbidden(request, access, "Your role in this team does not allow creating API keys.")
    form = KeyCreateForm(
        request.POST, model_choices=catalog.model_choices(), project_choices=_project_choices(access.team)
    )
    if not form.is_valid():
        return _keys_page(request, access, create_form=form, status=400)
    d = form.cleaned_data
    try:
        minted = key_services.create_key(
            _key_actor(request, access),
            name=d["name"],
            mode=d["mode"],
            scopes=d["scopes"],
            expires_at=d["expires_on"],
            **form.limits(),
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        _add_service_error(form, exc)
        return _keys_page(request, access, create_form=form, status=400)
    return _keys_page(request, access, minted=minted)


def _team_key(access: TeamAccess, key_id: str) -> ApiKey:
    return get_object_or_404(ApiKey.objects.select_related("created_by", "team"), team=access.team, public_id=key_id)


@team_page(Action.KEYS_VIEW, methods=("POST",))
def key_rotate(request, access: TeamAccess, key_id: str):
    key = _team_key(access, key_id)
    form = KeyRotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the old secret keeps working.")
        return redirect("dashboard:keys", team_id=access.team.public_id)
    try:
        minted = key_services.rotate_key(
            key, actor=_key_actor(request, access), grace_seconds=form.cleaned_data["grace_seconds"]
        )
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:keys", team_id=access.team.public_id)
    return _keys_page(request, access, rotated=minted)


@team_page(Action.KEYS_VIEW, methods=("POST",))
def key_revoke(request, access: TeamAccess, key_id: str):
    key = _team_key(access, key_id)
    try:
        key_services.revoke_key(key, actor=_key_actor(request, access))
    except PermissionDenied as exc:
        return forbidden(request, access, exc.message)
    except AccountsError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Key “{key.name}” revoked. Requests with it are refused from now on.")
    return redirect("dashboard:keys", team_id=access.team.public_id)


@team_page(Action.KEYS_VIEW, methods=("GET", "POST"))
def key_limits(request, access: TeamAccess, key_id: str):
    key = _team_key(access, key_id)
    actor = _key_actor(request, access)
    if not _may_manage(actor, key):
        return forbidden(request, access, "You can only change API keys you created.")
    initial = {
        "allowed_models": key.allowed_models,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "monthly_spend_cap_usd": (
            None if key.monthly_spend_cap_nusd is None else money.exact(key.monthly_spend_cap_nusd)
        ),
        "ip_allowlist": "\n".join(key.ip_allowlist),
        "max_cost_per_request_usd": (
            None if key.max_cost_per_request_nusd is None else money.exact(key.max_cost_per_request_nusd)
        ),
        "project": key.project.public_id if key.project_id else "",
    }
    form = KeyLimitsForm(
        request.POST or None,
        initial=initial,
        model_choices=catalog.model_choices(key.allowed_models),
        project_choices=_project_choices(access.team),
    )
    if request.method == "POST" and form.is_valid():
        try:
            key_services.update_key_limits(key, actor=actor, **form.limits())
        except PermissionDenied as exc:
            return forbidden(request, access, exc.message)
        except AccountsError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, f"Limits of “{key.name}” saved.")
            return redirect("dashboard:keys", team_id=access.team.public_id)
    return page(
        request,
        "dashboard/key_limits.html",
        access,
        "keys",
        {"key": key, "form": form},
        status=400 if form.errors else 200,
    )


# --- members ----------------------------------------------------------------------------------------


def _members_page(request, access, *, invite_form=None, status=200):
    team = access.team
    members = list(Membership.objects.filter(team=team).select_related("user").order_by("created_at"))
    invitations = [
        i
        for i in Invitation.objects.filter(
            team=team, accepted_at=None, revoked_at=None, replaced_at=None
        ).select_related("invited_by")
        if i.status == "pending"
    ]
    can_manage = access.can(Action.MEMBERS_MANAGE)
    ctx = {
        "members": members,
        "invitations": invitations,
        "can_manage": can_manage,
        "invite_form": invite_form or InviteForm(),
        "assignable": [(v, label) for v, label in Role.choices if can_assign(access.role, v)],
        "assignable_values": {v for v in Role.values if can_assign(access.role, v)},
        "open_invite": invite_form is not None and bool(invite_form.errors),
        "only_owner": is_only_owner(access),
    }
    return page(request, "dashboard/members.html", access, "members", ctx, status=status)


@team_page(Action.MEMBERS_VIEW)
def members(request, access: TeamAccess):
    return _members_page(request, access)


def _members_action(request, access: TeamAccess, fn, success: str, *, then: str = "dashboard:members"):
    """Run one accounts service (the judge of the rules): on success flash `success` and redirect to `then`;
    on refusal re-render the members page with the service's message and a 403 or 400."""
    try:
        fn()
    except PermissionDenied as exc:
        messages.error(request, exc.message)
        return _members_page(request, access, status=403)
    except AccountsError as exc:
        messages.error(request, exc.message)
        return _members_page(request, access, status=400)
    messages.success(request, success)
    if then == "dashboard:home":
        return redirect(then)
    return redirect(then, team_id=access.team.public_id)


@team_page(Action.MEMBERS_VIEW, methods=("POST",))
def member_invite(request, access: TeamAccess):
    form = InviteForm(request.POST)
    if not access.can(Action.MEMBERS_MANAGE):
        return forbidden(request, access)
    if not form.is_valid():
        return _members_page(request, access, invite_form=form, status=400)
    try:
        issued = account_services.invite_member(
            actor=request.user,
            team=access.team,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            ip=client_ip(request),
        )
    except AccountsError as exc:
        form.add_error(None, exc.message)
        return _members_page(request, access, invite_form=form, status=400)
    messages.success(request, f"Invitation sent to {issued.invitation.email}.")
    return redirect("dashboard:members", team_id=access.team.public_id)


def _membership(access, membership_id: int) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user", "team"), team=access.team, pk=membership_id)


def _invitation(access, invitation_id: int) -> Invitation:
    return get_object_or_404(Invitation.objects.select_related("team"), team=access.team, pk=invitation_id)


def _refuse_unless_manager(request, access):
    if not access.can(Action.MEMBERS_MANAGE):
        return forbidden(request, access)
    return None


@team_page(Action.MEMBERS_VIEW, methods=("POST",))
def member_role(request, access: TeamAccess, membership_id: int):
    membership = _membership(access, membership_id)
    if refused := _refuse_unless_manager(request, access):
        return refused
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("dashboard:members", team_id=access.team.public_id)
    role = form.cleaned_data["role"]
    return _members_action(
        request,
        access,
        lambda: account_services.change_role(
            actor=request.user, membership=membership, role=role, ip=client_ip(request)
        ),
        f"{membership.user.email} is now {Role(role).label.lower()}.",
    )


@team_page(Action.MEMBERS_VIEW, methods=("POST",))
def member_remove(request, access: TeamAccess, membership_id: int):
    membership = _membership(access, membership_id)
    leaving = membership.user_id == request.user.pk
    if not leaving and (refused := _refuse_unless_manager(request, access)):
        return refused
    return _members_action(
        request,
        access,
        lambda: account_services.remove_member(actor=request.user, membership=membership, ip=client_ip(request)),
        "You left the team." if leaving else f"{membership.user.email} was removed.",
        then="dashboard:home" if leaving else "dashboard:members",
    )


@team_page(Action.MEMBERS_VIEW, methods=("POST",))
def invitation_resend(request, access: TeamAccess, invitation_id: int):
    invitation = _invitation(access, invitation_id)
    if refused := _refuse_unless_manager(request, access):
        return refused
    if invitation.status != "pending":
        raise Http404("No such pending invitation.")
    return _members_action(
        request,
        access,
        lambda: account_services.resend_invitation(actor=request.user, invitation=invitation, ip=client_ip(request)),
        f"A fresh invitation was sent to {invitation.email}.",
    )


@team_page(Action.MEMBERS_VIEW, methods=("POST",))
def invitation_revoke(request, access: TeamAccess, invitation_id: int):
    invitation = _invitation(access, invitation_id)
    if refused := _refuse_unless_manager(request, access):
        return refused
    return _members_action(
        request,
        access,
        lambda: account_services.revoke_invitation(actor=request.user, invitation=invitation, ip=client_ip(request)),
        f"The invitation to {invitation.email} was revoked.",
    )


# --- catalog and quickstart ---------------------------------------------------------------------------


@team_page()
def models_page(request, access: TeamAccess):
    return page(request, "dashboard/models.html", access, "models", {"models": catalog.price_rows()})


@team_page()
def quickstart(request, access: TeamAccess):
    models = catalog.price_rows()
    chat = next((m for m in models if m.kind == "chat"), None)
    ctx = {
        "base_url": f"{settings.PUBLIC_BASE_URL}/v1",
        "model": chat.id if chat else "demo-chat",
        "can_create_key": access.can(Action.KEYS_MANAGE_OWN),
        "keys_url": reverse("dashboard:keys", kwargs={"team_id": access.team.public_id}),
    }
    return page(request, "dashboard/quickstart.html", access, "quickstart", ctx)
