"""API-key services: mint, rotate, revoke, update limits. The plaintext leaves only via the return value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from accounts import keyformat
from accounts.models import DEFAULT_SCOPES, ApiKey, KeyMode, Scope, Team, User
from accounts.services import AccountsError, audit


@dataclass(frozen=True)
class MintedKey:
    key: ApiKey
    plaintext: str  # shown once; never stored or logged


def validate_scopes(scopes) -> list[str]:
    scopes = list(dict.fromkeys(scopes))
    unknown = [s for s in scopes if s not in Scope.values]
    if unknown:
        raise AccountsError("invalid_scope", f"Unknown scope(s): {', '.join(unknown)}.")
    if not scopes:
        raise AccountsError("invalid_scope", "A key needs at least one scope.")
    return scopes


@transaction.atomic
def mint_key(
    *,
    team: Team,
    name: str,
    mode: str = KeyMode.LIVE,
    scopes=None,
    created_by: User | None = None,
    actor_label: str = "",
    ip: str | None = None,
    allowed_models=(),
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    monthly_spend_cap_nusd: int | None = None,
    ip_allowlist=(),
    expires_at: datetime | None = None,
) -> MintedKey:
    if mode not in KeyMode.values:
        raise AccountsError("invalid_mode", "Key mode must be 'live' or 'test'.")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AccountsError("invalid_name", "A key needs a name of 1 to 100 characters.")
    scopes = validate_scopes(DEFAULT_SCOPES if scopes is None else scopes)
    plaintext = keyformat.generate(mode)
    prefix, last4 = keyformat.display_parts(plaintext)
    key = ApiKey.objects.create(
        team=team, name=name, mode=mode, scopes=scopes, created_by=created_by,
        secret_hash=keyformat.lookup_hash(plaintext), display_prefix=prefix, last4=last4,
        allowed_models=list(allowed_models), rpm_limit=rpm_limit, tpm_limit=tpm_limit,
        monthly_spend_cap_nusd=monthly_spend_cap_nusd, ip_allowlist=list(ip_allowlist), expires_at=expires_at,
    )
    audit("key.created", team=team, actor=created_by, actor_label=actor_label, target=key.masked, ip=ip,
          key=key.public_id, mode=mode, scopes=scopes)
    return MintedKey(key, plaintext)
