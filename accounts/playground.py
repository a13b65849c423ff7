"""The dashboard Playground's credential: a short-lived token bound to the member's browser session.

The Playground calls the public /v1 API like any client, so its requests are authenticated, rate limited,
held, settled and receipted like a key's. It does not use an API key: a key is long-lived and would sit in the
page. The page instead asks `POST /t/<team>/playground/token/` (a signed-in member, CSRF-checked) for a token
that
- lives TTL (15 minutes), never past the session's own expiry;
- works only together with the cookie of the session that minted it (the page's same-origin fetch sends it):
  a copied token is useless elsewhere, and it stops working when that session ends: log-out (the session is
  deleted, and its tokens with it), expiry, or a password change (the session's auth hash no longer matches);
- acts for that member in that team, live or test, with only the `inference` scope, while their role allows
  the Playground; it is rate limited by the team's plan and paid from the team's wallet;
- is stored as an HMAC only (like API keys), as is the session key it is bound to.

Receipts name it "Playground (<email>)". Lookups are cached per process for under a second, like keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, user_logged_out
from django.db import transaction
from django.dispatch import receiver
from django.http.cookie import parse_cookie
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts import auth
from accounts.models import PLAN_LIMITS, KeyMode, Membership, PlaygroundToken, Scope, Team, User
from accounts.permissions import Action, can
from accounts.services import AccountsError, audit, require
from config.db import run_db
from config.errors import ApiError

PREFIX = auth.PLAYGROUND_PREFIX
TTL = timedelta(minutes=15)
LABEL = "Playground"
MAX_TOKENS_PER_SESSION = 5  # per team and mode: several tabs may share a session; a loop must not pile rows up
SCOPES = frozenset({Scope.INFERENCE.value})


def label_for(user: User) -> str:
    """What receipts say paid for a Playground request (the pipeline writes "<name> (<masked>)")."""
    return f"{LABEL} ({user.email})"


def _hash(value: str, purpose: str) -> str:
    secret = settings.API_KEY_HASH_SECRET.encode()
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class MintedToken:
    plaintext: str  # handed to the page's script once; never stored or logged
    mode: str
    expires_at: datetime


@transaction.atomic
def mint(*, user: User, team: Team, session, mode: str, ip: str | None = None) -> MintedToken:
    """A Playground token for `user` in `team`, bound to `session` (the request's session)."""
    require(user, team, Action.PLAYGROUND_USE)
    if mode not in KeyMode.values:
        raise AccountsError("invalid_mode", "Mode must be 'live' or 'test'.")
    session_key = session.session_key
    if not session_key:
        raise AccountsError("no_session", "Your session has ended. Log in again.")
    now = timezone.now()
    expires_at = min(now + TTL, session.get_expiry_date())
    session_hash = _hash(session_key, "session")
    PlaygroundToken.objects.filter(user=user, expires_at__lte=now).delete()
    older = PlaygroundToken.objects.filter(session_hash=session_hash, team=team, mode=mode).order_by("-created_at")
    PlaygroundToken.objects.filter(
        pk__in=list(older.values_list("pk", flat=True)[MAX_TOKENS_PER_SESSION - 1 :])
    ).delete()
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = PlaygroundToken.objects.create(
        team=team,
        user=user,
        mode=mode,
        token_hash=_hash(plaintext, "token"),
        session_hash=session_hash,
        created_at=now,
        expires_at=expires_at,
    )
    audit(
        "playground.token_issued",
        team=team,
        actor=user,
        target=token.public_id,
        ip=ip,
        mode=mode,
        expires_at=expires_at.isoformat(),
    )
    return MintedToken(plaintext, mode, expires_at)


# --- authentication (from accounts.auth.aauthenticate, for tokens starting with PREFIX) ---------------------


@dataclass(frozen=True, slots=True)
class _Grant:
    ctx: auth.KeyContext
    expires_at: datetime


_cache: dict[tuple[str, str], tuple[_Grant | None, float]] = {}


def clear_cache() -> None:
    _cache.clear()


def session_key_from(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    return parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME) or None


def _session_belongs_to(session_key: str, user: User) -> bool:
    """The session still exists, is signed in as `user`, and its auth hash matches (a password change ends it)."""
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    return str(data.get(SESSION_KEY, "")) == str(user.pk) and constant_time_compare(
        data.get(HASH_SESSION_KEY) or "", user.get_session_auth_hash()
    )


def _load(token_hash: str, session_key: str) -> _Grant | None:
    row = PlaygroundToken.objects.select_related("user", "team").filter(token_hash=token_hash).first()
    if row is None or not hmac.compare_digest(row.session_hash, _hash(session_key, "session")):
        return None
    user, team = row.user, row.team
    if not user.is_active or not _session_belongs_to(session_key, user):
        return None
    role = Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()
    if not can(role, Action.PLAYGROUND_USE):
        return None
    rpm, tpm = PLAN_LIMITS.get(team.plan, (None, None))
    ctx = auth.KeyContext(
        key_id=None,  # not an API key: receipts and holds name no key, the label says who
        public_id=row.public_id,
        name=LABEL,
        masked=user.email,
        team_id=team.pk,
        team_public_id=team.public_id,
        team_plan=team.plan,
        mode=row.mode,
        scopes=SCOPES,
        allowed_models=(),
        rpm_limit=rpm,
        tpm_limit=tpm,
        monthly_spend_cap_nusd=None,
        grace_ends_at=None,
    )
    return _Grant(ctx, row.expires_at)


def _refused(message: str) -> ApiError:
    return ApiError(401, "invalid_api_key", message, kind="invalid_request_error")


async def aauthenticate(raw_token: str, *, cookie_header: str | None, scope: str) -> auth.KeyContext:
    session_key = session_key_from(cookie_header)
    if not session_key:
        raise _refused(
            "A Playground credential works only for inference requests from the browser session it was issued to."
        )
    slot = (_hash(raw_token, "token"), _hash(session_key, "session"))
    hit = _cache.get(slot)
    if hit is not None and auth.monotonic() - hit[1] < auth.CACHE_TTL:
        grant = hit[0]
    else:
        grant = await run_db(_load, slot[0], session_key)
        if len(_cache) >= auth.CACHE_MAX_ENTRIES:
            _cache.clear()
        _cache[slot] = (grant, auth.monotonic())
    if grant is None:
        raise _refused("This Playground session has ended. Reload the Playground (log in again if asked).")
    if grant.expires_at <= auth.now():
        raise _refused("This Playground credential has expired; the Playground asks for a new one.")
    if scope and scope not in grant.ctx.scopes:
        raise ApiError(403, "insufficient_scope", f"A Playground credential lacks the '{scope}' scope.")
    return grant.ctx


@receiver(user_logged_out, dispatch_uid="accounts.playground.end_with_the_session")
def _end_with_the_session(sender, request, user, **kwargs) -> None:
    """Logging out ends the session's Playground tokens now (its deleted session would refuse them anyway)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if not session_key:
        return
    session_hash = _hash(session_key, "session")
    PlaygroundToken.objects.filter(session_hash=session_hash).delete()
    for slot in [s for s in _cache if s[1] == session_hash]:
        _cache.pop(slot, None)
