"""Prepaid credit: wallet, holds, append-only ledger, receipts, Stripe top-ups.

Every amount is an integer number of nano-dollars (`*_nusd`, 1 USD = 10**9 nusd).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.money import NUSD_PER_USD
from config.ids import new_id


def _txn_id() -> str:
    return new_id("txn")


def _rcpt_id() -> str:
    return new_id("rcpt")


def _hold_id() -> str:
    return new_id("hold")


def _topup_id() -> str:
    return new_id("topup")


class Wallet(models.Model):
    """One per team. `balance_nusd` always equals the sum of the team's ledger entries;
    `held_nusd` always equals the sum of its open holds (`check_ledger` proves both)."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="wallet")
    balance_nusd = models.BigIntegerField(default=0)
    held_nusd = models.BigIntegerField(default=0)
    # Auto-recharge: charge the saved card off-session when available credit drops below the threshold.
    auto_recharge_enabled = models.BooleanField(default=False)
    auto_recharge_threshold_nusd = models.BigIntegerField(default=5 * NUSD_PER_USD)
    auto_recharge_amount_nusd = models.BigIntegerField(default=20 * NUSD_PER_USD)
    auto_recharge_in_flight_since = models.DateTimeField(null=True, blank=True)
    auto_recharge_last_error = models.CharField(max_length=300, blank=True)
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    stripe_payment_method_id = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The balance.low event: sent once each time the balance falls below the threshold (None: off); `low_balance`
    # remembers that it is below, so it is not sent again until the balance has been back at or above it.
    low_balance_threshold_nusd = models.BigIntegerField(null=True, blank=True)
    low_balance = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(held_nusd__gte=0), name="wallet_held_non_negative"),
            models.CheckConstraint(
                condition=models.Q(auto_recharge_threshold_nusd__gte=0) & models.Q(auto_recharge_amount_nusd__gte=0),
                name="wallet_auto_recharge_non_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(low_balance_threshold_nusd__isnull=True)
                | models.Q(low_balance_threshold_nusd__gte=0),
                name="wallet_low_balance_threshold_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"wallet of {self.team}"

    @property
    def available_nusd(self) -> int:
        return self.balance_nusd - self.held_nusd


class HoldStatus(models.TextChoices):
    OPEN = "open", "Open"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired (released by the sweeper)"


class HoldLease(models.Model):
    """One per server process that places holds (billing.leases). The process renews `expires_at` for all its
    holds at once; when it stops (the process died), the sweeper releases the holds that carry this lease.
    Rows are tiny and kept (one per process start), so a hold's lease is never dangling."""

    owner = models.CharField(max_length=120, help_text="host:pid of the process.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"lease {self.pk} ({self.owner})"


class SpendCounter(models.Model):
    """What one key or one project has spent this calendar month (UTC), settled or reserved by open holds: the row
    a monthly cap or budget is enforced on.

    A hold under a cap moves it with a conditional UPDATE (`used = used + x WHERE used + x <= cap`) in the
    transaction that reserves the wallet's credit, so concurrent holds queue on this row and can never both pass
    the cap; settlement replaces the held amount with the cost, a release or the sweeper takes it back
    (billing.backends.orm). A request counts in the month its hold was placed."""

    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="spend_counters"
    )
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="spend_counters"
    )
    month = models.DateField(help_text="The first day of the month (UTC).")
    used_nusd = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(api_key__isnull=True, project__isnull=False)
                | models.Q(api_key__isnull=False, project__isnull=True),
                name="spend_counter_one_owner",
            ),
            models.UniqueConstraint(
                fields=["api_key", "month"], condition=models.Q(api_key__isnull=False), name="spend_counter_key_month"
            ),
            models.UniqueConstraint(
                fields=["project", "month"],
                condition=models.Q(project__isnull=False),
                name="spend_counter_project_month",
            ),
            models.CheckConstraint(condition=models.Q(used_nusd__gte=0), name="spend_counter_non_negative"),
        ]

    def __str__(self) -> str:
        owner = f"key {self.api_key_id}" if self.api_key_id else f"project {self.project_id}"
        return f"{owner} {self.month:%Y-%m}: {self.used_nusd} nusd"


class Hold(models.Model):
    """Credit reserved before an upstream call. Open holds add up to the wallet's `held_nusd`.

    A hold placed by a serving process carries that process's `lease` and stays open while the process lives,
    however long its request runs. A hold that outlives its request on purpose (an asynchronous job) has no
    lease and expires at `expires_at` instead."""

    public_id = models.CharField(max_length=40, unique=True, default=_hold_id, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="holds")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    request_id = models.CharField(max_length=40, db_index=True)
    amount_nusd = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=HoldStatus.choices, default=HoldStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    lease = models.ForeignKey(HoldLease, null=True, blank=True, on_delete=models.PROTECT, related_name="holds")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Only for holds without a lease.")
    closed_at = models.DateTimeField(null=True, blank=True)
    # The monthly counters this hold moved (a key with a cap, a project with a budget): its end moves them back.
    key_counter = models.ForeignKey(
        SpendCounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="key_holds"
    )
    project_counter = models.ForeignKey(
        SpendCounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="project_holds"
    )

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"]), models.Index(fields=["status", "lease"])]
        constraints = [models.CheckConstraint(condition=models.Q(amount_nusd__gte=0), name="hold_amount_non_negative")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.amount_nusd} nusd ({self.status})"


class LedgerKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    AUTO_RECHARGE = "auto_recharge", "Auto-recharge"
    CHARGE = "charge", "Charge"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"
    GRANT = "grant", "Grant"
    CREDIT_CODE = "credit_code", "Credit code"


class AppendOnlyError(Exception):
    pass


class LedgerQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ARG002
        raise AppendOnlyError("Ledger entries are append-only.")

    def delete(self):
        raise AppendOnlyError("Ledger entries are append-only.")


class LedgerEntry(models.Model):
    """Append-only money movement. Positive credits the wallet, negative debits it."""

    public_id = models.CharField(max_length=40, unique=True, default=_txn_id, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=20, choices=LedgerKind.choices)
    amount_nusd = models.BigIntegerField()
    balance_after_nusd = models.BigIntegerField()
    reference = models.CharField(max_length=120, blank=True, db_index=True, help_text="Receipt, top-up or event id.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(
        max_length=300, blank=True, help_text="Internal: operators only, never shown to customers."
    )
    # db_default: the settlement statement (billing.fastpath) inserts charges without naming this column.
    memo = models.CharField(
        max_length=300, blank=True, default="", db_default="", help_text="Shown to the customer on the Billing page."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} {self.amount_nusd}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Ledger entries are append-only.")


class ReceiptStatus(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    PARTIAL = "partial", "Partial (client disconnected)"


class Receipt(models.Model):
    """What one request cost and why: the tokens, the unit prices used and the exact amounts."""

    public_id = models.CharField(max_length=40, unique=True, default=_rcpt_id, editable=False)
    request_id = models.CharField(max_length=40, db_index=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="receipts")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="receipts"
    )
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="receipts"
    )
    key_label = models.CharField(max_length=60, blank=True, help_text="Key name and masked secret at the time.")
    mode = models.CharField(max_length=4, default="live")
    is_test = models.BooleanField(default=False)
    endpoint = models.CharField(max_length=40, default="chat.completions")
    model_requested = models.CharField(max_length=120)
    model_routed = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=120, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    input_price_nusd = models.BigIntegerField(default=0, help_text="Per prompt token.")
    cached_price_nusd = models.BigIntegerField(default=0, help_text="Per cached prompt token.")
    output_price_nusd = models.BigIntegerField(default=0, help_text="Per completion token.")
    images = models.PositiveIntegerField(default=0, help_text="Images produced (image models).")
    image_price_nusd = models.BigIntegerField(default=0, help_text="Per image, for the size and quality asked.")
    input_cost_nusd = models.BigIntegerField(default=0)
    output_cost_nusd = models.BigIntegerField(default=0)
    total_cost_nusd = models.BigIntegerField(default=0)
    hold_amount_nusd = models.BigIntegerField(default=0)
    max_cost_nusd = models.BigIntegerField(
        null=True, blank=True, help_text="The request's own cap (Tollgate-Max-Cost, max_cost_usd or its key's default)."
    )
    # The price book: the sale price version in force when the hold was placed (gateway.PriceVersion) and the
    # serving route's cost version; empty on test receipts, which record no upstream cost.
    price_version = models.CharField(max_length=40, blank=True)
    cost_version = models.CharField(max_length=40, blank=True)
    upstream_cost_nusd = models.BigIntegerField(
        default=0,
        help_text="What the upstream billed the operator for this request: the serving attempt at its route's cost "
        "prices, plus failed attempts an upstream reported usage for. Margin = charged - this.",
    )
    uncollected_nusd = models.BigIntegerField(
        default=0,
        help_text="Part of the cost the wallet could not pay (its hold had been released by the sweeper and the "
        "balance ran out). The charge entry in the ledger is total cost minus this.",
    )
    status = models.CharField(max_length=10, choices=ReceiptStatus.choices, default=ReceiptStatus.SUCCEEDED)
    error_code = models.CharField(max_length=60, blank=True)
    streamed = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"]), models.Index(fields=["api_key", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(total_cost_nusd=models.F("input_cost_nusd") + models.F("output_cost_nusd")),
                name="receipt_total_is_sum",
            ),
            models.CheckConstraint(condition=models.Q(total_cost_nusd__gte=0), name="receipt_cost_non_negative"),
            models.CheckConstraint(
                condition=models.Q(uncollected_nusd__gte=0)
                & models.Q(uncollected_nusd__lte=models.F("total_cost_nusd")),
                name="receipt_uncollected_within_cost",
            ),
            models.CheckConstraint(
                condition=models.Q(upstream_cost_nusd__gte=0), name="receipt_upstream_cost_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def charged_nusd(self) -> int:
        """What the wallet paid (the charge entry in the ledger): the cost less what could not be collected."""
        return self.total_cost_nusd - self.uncollected_nusd

    @property
    def margin_nusd(self) -> int:
        return self.charged_nusd - self.upstream_cost_nusd

    @property
    def total_tokens(self) -> int:
        # prompt_tokens counts only uncached prompt tokens (billing.pricing.Usage), so add the cached ones back.
        return self.prompt_tokens + self.cached_tokens + self.completion_tokens


class TopUpStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


class TopUp(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_topup_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="topups")
    kind = models.CharField(
        max_length=20, choices=[("checkout", "Checkout"), ("auto_recharge", "Auto-recharge")], default="checkout"
    )
    amount_nusd = models.BigIntegerField()
    refunded_nusd = models.BigIntegerField(default=0)
    stripe_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    status = models.CharField(max_length=20, choices=TopUpStatus.choices, default=TopUpStatus.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    credited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_nusd__gt=0), name="topup_amount_positive")]

    def __str__(self) -> str:
        return self.public_id


class StripeEvent(models.Model):
    """Every webhook event we accepted, once. The unique id makes redelivery a no-op."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="received")  # received, processed, ignored, failed
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


def _credit_code_id() -> str:
    return new_id("cc")


def _credit_batch_id() -> str:
    return new_id("ccb")


class CreditCode(models.Model):
    """A redeemable credit code (like a gift card). Only an HMAC of the code is stored: the plaintext is shown
    once, in the CSV the operator downloads when minting (billing.credit_codes)."""

    public_id = models.CharField(max_length=40, unique=True, default=_credit_code_id, editable=False)
    batch = models.CharField(max_length=40, default=_credit_batch_id, db_index=True, help_text="Codes minted together.")
    code_hash = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4, help_text="The code's last four characters, to recognise it.")
    amount_nusd = models.BigIntegerField()
    max_redemptions = models.PositiveIntegerField(default=1, help_text="How many teams may redeem this code.")
    redemptions = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="Operators only, e.g. the campaign.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_nusd__gt=0), name="credit_code_amount_positive"),
            models.CheckConstraint(condition=models.Q(max_redemptions__gte=1), name="credit_code_max_at_least_one"),
            # The conditional UPDATE in billing.credit_codes.redeem keeps this; the constraint makes sure.
            models.CheckConstraint(
                condition=models.Q(redemptions__lte=models.F("max_redemptions")), name="credit_code_not_over_redeemed"
            ),
        ]

    def __str__(self) -> str:
        return f"TG-…-{self.last4} ({self.public_id})"

    @property
    def masked(self) -> str:
        return f"TG-…-{self.last4}"

    def status(self, now=None) -> str:
        now = now or timezone.now()
        if self.disabled_at:
            return "disabled"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        if self.redemptions >= self.max_redemptions:
            return "used up"
        return "active"


class CreditCodeRedemption(models.Model):
    """One team redeemed one code, once (the unique constraint is the guard, even under concurrency)."""

    code = models.ForeignKey(CreditCode, on_delete=models.PROTECT, related_name="redemption_rows")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="credit_code_redemptions")
    ledger_entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="credit_code_redemption")
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["code", "team"], name="one_redemption_per_code_and_team")]

    def __str__(self) -> str:
        return f"{self.code.masked} by {self.team}"
