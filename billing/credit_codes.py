"""Credit codes, like gift cards: operators mint them in the admin, a team member with billing rights redeems one.

- A code reads `TG-XXXX-XXXX-XXXX`: 12 characters of Crockford base32 (60 random bits from `secrets`). Only an
  HMAC-SHA256 of it (keyed with API_KEY_HASH_SECRET, domain-separated from API keys) is stored, plus its last
  four characters; the plaintext leaves only through `mint_codes`' return value (the admin's one-time CSV).
- A redemption is one transaction: a conditional UPDATE claims one use of the code (`… WHERE redemptions <
  max_redemptions`, so N concurrent redeemers of a code with k uses left credit exactly k), the ledger entry
  credits the wallet, and a row unique per (code, team) makes "one team, one redemption" hold under races.
- Attempts are counted per person and per team in the cache before anything is looked up, so guessing costs
  an attacker an hour per handful of tries; a wrong, expired, disabled or used-up code gets the same answer.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.keys import KeyActor
from accounts.models import Team, User
from accounts.permissions import Action, can
from accounts.services import PermissionDenied, audit, require
from billing import money
from billing.errors import BillingError
from billing.models import CreditCode, CreditCodeRedemption, LedgerKind
from billing.services import _post, _send_wallet_credited, ensure_wallet

log = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
BODY_LEN = 12
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})  # what people mistype for the digits
MAX_CODES_PER_BATCH = 1000
MAX_REDEMPTIONS_PER_CODE = 100_000
MAX_CODE_AMOUNT_NUSD = 10_000 * money.NUSD_PER_USD
WINDOW_SECONDS = 3600

INVALID = "This code is not valid."
ALREADY = "Your team has already redeemed this code."


class CreditCodeError(BillingError):
    """A refused mint or redemption; `message` is safe to show the person who tried."""

    def __init__(self, code: str, message: str, *, status: int = 400, field: str | None = None, retry_after=None):
        super().__init__(code, message)
        self.status = status
        self.field = field
        self.retry_after = retry_after


# --- the code itself -------------------------------------------------------------------------------------


def generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return f"TG-{body[0:4]}-{body[4:8]}-{body[8:12]}"


def normalize(text) -> str | None:
    """What a person typed → the canonical `TG-XXXX-XXXX-XXXX`, or None when it cannot be a code.

    Case, spaces, dashes, a missing `TG` prefix and O/I/L for 0/1 are forgiven."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    cleaned = "".join(ch for ch in text.upper() if ch not in " -_\t\n").translate(_READ_AS)
    if len(cleaned) == BODY_LEN + 2 and cleaned.startswith("TG"):
        cleaned = cleaned[2:]
    if len(cleaned) != BODY_LEN or any(ch not in ALPHABET for ch in cleaned):
        return None
    return f"TG-{cleaned[0:4]}-{cleaned[4:8]}-{cleaned[8:12]}"


def lookup_hash(canonical: str) -> str:
    secret = settings.API_KEY_HASH_SECRET.encode()
    return hmac.new(secret, b"tollgate-credit-code:" + canonical.encode(), hashlib.sha256).hexdigest()


# --- minting (operators) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MintedBatch:
    batch: str
    codes: list[tuple[CreditCode, str]]  # (row, plaintext): the plaintext exists only here

    def csv(self) -> str:
        """The one-time download: every code with what it is worth."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["code", "amount_usd", "max_redemptions", "expires_at", "batch", "code_id", "note"])
        for row, plaintext in self.codes:
            writer.writerow(
                [
                    plaintext,
                    money.exact(row.amount_nusd),
                    row.max_redemptions,
                    row.expires_at.isoformat() if row.expires_at else "",
                    row.batch,
                    row.public_id,
                    row.note,
                ]
            )
        return out.getvalue()


def mint_codes(
    *,
    amount_nusd: int,
    count: int,
    actor: User | None,
    max_redemptions: int = 1,
    expires_at: datetime | None = None,
    note: str = "",
) -> MintedBatch:
    """`count` new codes worth `amount_nusd` each. Returns the plaintexts, once; only hashes are stored."""
    note = (note or "").strip()
    if isinstance(amount_nusd, bool) or not isinstance(amount_nusd, int) or amount_nusd <= 0:
        raise CreditCodeError("invalid_amount", "A code must be worth a positive amount.", field="amount")
    if amount_nusd > MAX_CODE_AMOUNT_NUSD:
        raise CreditCodeError(
            "invalid_amount", f"A code can be worth at most {money.usd(MAX_CODE_AMOUNT_NUSD)}.", field="amount"
        )
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CODES_PER_BATCH:
        raise CreditCodeError(
            "invalid_count", f"Mint between 1 and {MAX_CODES_PER_BATCH} codes at a time.", field="count"
        )
    if (
        isinstance(max_redemptions, bool)
        or not isinstance(max_redemptions, int)
        or not 1 <= max_redemptions <= MAX_REDEMPTIONS_PER_CODE
    ):
        raise CreditCodeError(
            "invalid_max_redemptions",
            f"Each code can be redeemed by 1 to {MAX_REDEMPTIONS_PER_CODE:,} teams.",
            field="max_redemptions",
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise CreditCodeError("invalid_expiry", "The expiry must be in the future.", field="expires_at")
    if len(note) > 300:
        raise CreditCodeError("invalid_note", "Keep the note to 300 characters.", field="note")
    with transaction.atomic():
        batch = CreditCode._meta.get_field("batch").default()
        pairs = []
        for _ in range(count):
            plaintext = generate()
            row = CreditCode(
                batch=batch,
                code_hash=lookup_hash(plaintext),
                last4=plaintext[-4:],
                amount_nusd=amount_nusd,
                max_redemptions=max_redemptions,
                expires_at=expires_at,
                note=note,
                created_by=actor,
            )
            pairs.append((row, plaintext))
        CreditCode.objects.bulk_create([row for row, _ in pairs])
        audit(
            "billing.credit_codes_minted",
            team=None,
            actor=actor,
            target=batch,
            count=count,
            amount_usd=money.exact(amount_nusd),
            max_redemptions=max_redemptions,
            expires_at=expires_at.isoformat() if expires_at else None,
            note=note,
        )
    return MintedBatch(batch=batch, codes=pairs)


def disable_codes(codes, *, actor: User | None) -> int:
    """Stop codes from being redeemed (redemptions already made stay)."""
    with transaction.atomic():
        ids = list(
            CreditCode.objects.filter(pk__in=[c.pk for c in codes], disabled_at=None).values_list("pk", flat=True)
        )
        CreditCode.objects.filter(pk__in=ids).update(disabled_at=timezone.now())
        for public_id in CreditCode.objects.filter(pk__in=ids).values_list("public_id", flat=True):
            audit("billing.credit_code_disabled", team=None, actor=actor, target=public_id)
    return len(ids)


# --- redeeming (customers) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Redeemer:
    user: User | None
    label: str  # for the audit log
    throttle_id: str  # whose attempts are counted


def _redeemer(team: Team, actor: User | KeyActor) -> _Redeemer:
    """A signed-in member with billing rights, or an API key (`keys:write`) acting with its creator's role."""
    if isinstance(actor, KeyActor):
        if actor.team.pk != team.pk:
            raise PermissionDenied()
        if actor.key is not None and actor.key.is_test:
            raise PermissionDenied("A test key never moves money, so it cannot redeem credit codes.")
        if not can(actor.role, Action.BILLING_MANAGE):
            raise PermissionDenied("Redeeming a credit code needs billing rights in this team.")
        who = f"user:{actor.user.pk}" if actor.user else f"key:{actor.key.public_id if actor.key else 'system'}"
        return _Redeemer(actor.user, actor.label, who)
    require(actor, team, Action.BILLING_MANAGE)
    return _Redeemer(actor, actor.email, f"user:{actor.pk}")


def _count_attempt(name: str, limit: int) -> int | None:
    """One more attempt in this hour's window; the seconds to wait when over `limit`, else None."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"credit-code-attempts:{name}:{window}"
    cache.add(key, 0, timeout=WINDOW_SECONDS + 60)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=WINDOW_SECONDS + 60)
        used = 1
    if used > limit:
        return max(1, int((window + 1) * WINDOW_SECONDS - now))
    return None


def _throttle(team: Team, redeemer: _Redeemer) -> None:
    waits = [
        _count_attempt(redeemer.throttle_id, settings.CREDIT_CODE_ATTEMPTS_PER_USER_PER_HOUR),
        _count_attempt(f"team:{team.pk}", settings.CREDIT_CODE_ATTEMPTS_PER_TEAM_PER_HOUR),
    ]
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        log.warning("credit code attempts throttled for %s in team %s", redeemer.throttle_id, team.public_id)
        minutes = max(1, round(wait / 60))
        raise CreditCodeError(
            "rate_limited",
            f"Too many attempts to redeem a code. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            status=429,
            retry_after=wait,
        )


def redeem(team: Team, code: str, *, actor: User | KeyActor, ip: str | None = None) -> CreditCodeRedemption:
    """Credit the team with the code's amount, once per team and never more often than the code allows."""
    redeemer = _redeemer(team, actor)
    _throttle(team, redeemer)
    try:
        return _redeem(team, normalize(code), redeemer, ip)
    except CreditCodeError as exc:
        # Bounded by the throttle above; the text that was typed is never kept (it may be a real code, mistyped).
        audit(
            "billing.credit_code_refused",
            team=team,
            actor=redeemer.user,
            actor_label=redeemer.label,
            ip=ip,
            outcome=exc.code,
        )
        raise


def _redeem(team: Team, canonical: str | None, redeemer: _Redeemer, ip: str | None) -> CreditCodeRedemption:
    row = CreditCode.objects.filter(code_hash=lookup_hash(canonical)).first() if canonical else None
    if row is None:
        raise CreditCodeError("invalid_code", INVALID, field="code")
    if CreditCodeRedemption.objects.filter(code=row, team=team).exists():
        raise CreditCodeError("already_redeemed", ALREADY, status=409, field="code")
    now = timezone.now()
    try:
        with transaction.atomic():
            claimed = (
                CreditCode.objects.filter(pk=row.pk, disabled_at=None, redemptions__lt=F("max_redemptions"))
                .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
                .update(redemptions=F("redemptions") + 1)
            )
            if not claimed:  # expired, disabled or used up: the same answer as a code that does not exist
                raise CreditCodeError("invalid_code", INVALID, field="code")
            wallet = ensure_wallet(team)
            entry = _post(
                wallet.pk,
                kind=LedgerKind.CREDIT_CODE,
                amount_nusd=row.amount_nusd,
                reference=row.public_id,
                actor=redeemer.user,
                reason=f"Credit code {row.public_id} (batch {row.batch}){': ' + row.note if row.note else ''}"[:300],
                memo=f"Credit code {row.masked}",
            )
            # A concurrent redemption of the same code by the same team fails here, undoing the claim and credit.
            redemption = CreditCodeRedemption.objects.create(
                code=row, team=team, ledger_entry=entry, redeemed_by=redeemer.user, created_at=now
            )
            audit(
                "billing.credit_code_redeemed",
                team=team,
                actor=redeemer.user,
                actor_label=redeemer.label,
                target=row.public_id,
                ip=ip,
                amount_usd=money.exact(row.amount_nusd),
                ledger_entry=entry.public_id,
                balance_after_nusd=entry.balance_after_nusd,
            )
            transaction.on_commit(lambda: _send_wallet_credited(wallet.pk, entry))
    except IntegrityError:
        raise CreditCodeError("already_redeemed", ALREADY, status=409, field="code") from None
    return redemption
