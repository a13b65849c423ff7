"""Operators' view of the money: everything read-only; the writes are "Adjust balance…" (billing.adjustments:
ledger entry + audit row, internal reason required, customer memo optional) and minting credit codes
(billing.credit_codes: the codes are in the CSV the mint form answers with, once, and nowhere else)."""

from __future__ import annotations

from decimal import InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from accounts.access import signed_in
from billing import credit_codes
from billing.adjustments import MAX_ADJUSTMENT_NUSD, adjust_balance
from billing.errors import BillingError
from billing.models import (
    CreditCode,
    CreditCodeRedemption,
    Hold,
    LedgerEntry,
    Receipt,
    SpendCounter,
    StripeEvent,
    TopUp,
    Wallet,
)
from billing.money import usd
from billing.pricing import usd_to_nusd


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money rows change only through billing services, never by editing them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _usd(field: str, label: str):
    @admin.display(description=label, ordering=field)
    def show(self, obj):
        return usd(getattr(obj, field))

    return show


def _usd_to_nusd(amount, *, allow_zero: bool = False) -> int:
    try:
        nusd = usd_to_nusd(amount)
    except (ValueError, InvalidOperation):
        raise forms.ValidationError("Use at most nine decimal places.") from None
    if nusd == 0 and not allow_zero:
        raise forms.ValidationError("The amount cannot be zero.")
    return nusd


class AdjustBalanceForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        max_digits=20,
        decimal_places=9,
        help_text="Positive credits the wallet, negative debits it. Exact to the nano-dollar.",
    )
    memo = forms.CharField(
        label="Memo for the customer",
        max_length=300,
        required=False,
        help_text="Optional. Shown on the team's Billing page beside the entry. Your email is never shown to them.",
    )
    reason = forms.CharField(
        label="Internal note",
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required. For operators only: kept on the ledger entry and in the audit log, never shown "
        "to the customer.",
    )
    allow_negative = forms.BooleanField(
        label="Allow a negative balance",
        required=False,
        help_text="Without this, a debit that would leave the team less than nothing available is refused. "
        "With it, check_ledger reports the wallet until its balance is back at zero or above.",
    )

    def clean_amount_usd(self) -> int:
        nusd = _usd_to_nusd(self.cleaned_data["amount_usd"])
        if abs(nusd) > MAX_ADJUSTMENT_NUSD:
            raise forms.ValidationError(f"One adjustment is limited to {usd(MAX_ADJUSTMENT_NUSD)} either way.")
        return nusd

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("An internal note is required.")
        return reason


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ["team", "balance", "held", "available", "auto_recharge_enabled", "updated_at"]
    list_filter = ["auto_recharge_enabled"]
    search_fields = ["team__slug", "team__name", "team__public_id"]
    list_select_related = ["team"]
    actions = ["adjust_balance_action"]
    exclude = ["stripe_customer_id", "stripe_payment_method_id"]
    balance = _usd("balance_nusd", "balance")
    held = _usd("held_nusd", "held")

    @admin.display(description="available")
    def available(self, obj: Wallet) -> str:
        return usd(obj.available_nusd)

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        # The wallet is read-only here; adjusting goes through the service and needs the change permission.
        return request.user.has_perm("billing.change_wallet")

    @admin.action(description="Adjust balance…", permissions=["adjust"])
    def adjust_balance_action(self, request: HttpRequest, queryset):
        if "apply" in request.POST:
            form = AdjustBalanceForm(request.POST)
            if form.is_valid():
                d = form.cleaned_data
                done = 0
                for wallet in queryset.select_related("team"):
                    try:
                        adjust_balance(
                            wallet.team,
                            d["amount_usd"],
                            actor=signed_in(request.user),
                            reason=d["reason"],
                            memo=d["memo"],
                            allow_negative=d["allow_negative"],
                        )
                    except BillingError as exc:
                        self.message_user(request, f"{wallet.team}: {exc.message}", messages.ERROR)
                    else:
                        done += 1
                if done:
                    self.message_user(
                        request, f"Adjusted {done} wallet(s) by {usd(d['amount_usd'])}.", messages.SUCCESS
                    )
                return None
        else:
            form = AdjustBalanceForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Adjust balance",
            "form": form,
            "wallets": [(w.team, usd(w.balance_nusd), usd(w.available_nusd)) for w in queryset.select_related("team")],
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "opts": self.model._meta,
            "action_name": "adjust_balance_action",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/billing/adjust_balance.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "public_id", "wallet", "kind", "amount", "balance_after", "reference", "actor"]
    list_filter = ["kind", "created_at", ("wallet__team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["public_id", "reference", "reason", "memo", "wallet__team__slug", "actor__email"]
    date_hierarchy = "created_at"
    list_select_related = ["wallet__team", "actor"]
    amount = _usd("amount_nusd", "amount")
    balance_after = _usd("balance_after_nusd", "balance after")


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    # The cost comes early and ids are short, so it stays on screen beside the admin's two sidebars at a
    # laptop's width; the key, provider and token split are on each receipt's page and in the filters.
    list_display = [
        "receipt",
        "created_at",
        "team",
        "total_cost",
        "margin",
        "status_label",
        "model_requested",
        "tokens",
    ]
    list_display_links = ["receipt"]
    list_filter = [
        "status",
        "is_test",
        "endpoint",
        "model_requested",
        "provider",
        "created_at",
        ("team", admin.RelatedOnlyFieldListFilter),
        ("api_key", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = [
        "public_id",
        "request_id",
        "team__slug",
        "key_label",
        "api_key__public_id",
        "model_requested",
        "idempotency_key",
    ]
    date_hierarchy = "created_at"
    list_select_related = ["team", "api_key"]
    total_cost = _usd("total_cost_nusd", "cost")
    upstream_cost = _usd("upstream_cost_nusd", "upstream cost")

    @admin.display(description="margin (charged − upstream cost)")
    def margin(self, obj: Receipt) -> str:
        return "—" if obj.is_test else usd(obj.margin_nusd)

    @admin.display(description="receipt", ordering="public_id")
    def receipt(self, obj: Receipt) -> str:
        prefix, _, rest = obj.public_id.partition("_")
        return format_html('<span title="{}">{}_…{}</span>', obj.public_id, prefix, rest[-8:])

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: Receipt) -> str:
        return f"{obj.status} · test (not charged)" if obj.is_test else obj.status

    @admin.display(description="tokens")
    def tokens(self, obj: Receipt) -> str:
        return f"{obj.total_tokens:,}"


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "public_id", "wallet", "request_id", "amount", "status", "expires_at", "closed_at"]
    list_filter = [
        "status",
        "created_at",
        ("wallet__team", admin.RelatedOnlyFieldListFilter),
        ("api_key", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["public_id", "request_id", "wallet__team__slug"]
    date_hierarchy = "created_at"
    list_select_related = ["wallet__team"]
    amount = _usd("amount_nusd", "amount")


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "public_id", "team", "kind", "amount", "refunded", "status", "credited_at"]
    list_filter = ["status", "kind", "created_at", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["public_id", "team__slug", "stripe_session_id", "stripe_payment_intent_id"]
    date_hierarchy = "created_at"
    list_select_related = ["team"]
    amount = _usd("amount_nusd", "amount")
    refunded = _usd("refunded_nusd", "refunded")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "event_id", "type", "status", "processed_at"]
    list_filter = ["status", "type", "received_at"]
    search_fields = ["event_id", "type", "error"]
    date_hierarchy = "received_at"


# --- credit codes -------------------------------------------------------------------------------------------


class MintCodesForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount per code (USD)",
        max_digits=20,
        decimal_places=9,
        min_value=0,
        help_text="Exact to the nano-dollar.",
    )
    count = forms.IntegerField(
        label="How many codes", min_value=1, max_value=credit_codes.MAX_CODES_PER_BATCH, initial=1
    )
    max_redemptions = forms.IntegerField(
        label="Redemptions per code",
        min_value=1,
        max_value=credit_codes.MAX_REDEMPTIONS_PER_CODE,
        initial=1,
        help_text="How many different teams may redeem each code (a team redeems a code at most once).",
    )
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: never expires.",
    )
    note = forms.CharField(
        label="Note", max_length=300, required=False, help_text="For operators only, e.g. the campaign or customer."
    )

    def clean_amount_usd(self) -> int:
        return _usd_to_nusd(self.cleaned_data["amount_usd"])

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("Pick a moment in the future.")
        return value


@admin.register(CreditCode)
class CreditCodeAdmin(ReadOnlyAdmin):
    """ "Add" is the mint form; its answer is the CSV of the new codes, the only time they exist in plaintext."""

    list_display = [
        "public_id",
        "masked",
        "amount",
        "uses",
        "status_label",
        "expires_at",
        "note",
        "batch",
        "created_at",
    ]
    list_filter = ["created_at", "expires_at"]
    search_fields = ["public_id", "batch", "note", "last4"]
    date_hierarchy = "created_at"
    exclude = ["code_hash"]
    actions = ["disable_action"]
    amount = _usd("amount_nusd", "amount")

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("billing.add_creditcode")

    def has_disable_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_creditcode")

    @admin.display(description="code")
    def masked(self, obj: CreditCode) -> str:
        return obj.masked

    @admin.display(description="redeemed", ordering="redemptions")
    def uses(self, obj: CreditCode) -> str:
        return f"{obj.redemptions} of {obj.max_redemptions}"

    @admin.display(description="status")
    def status_label(self, obj: CreditCode) -> str:
        return obj.status()

    @admin.action(description="Disable the selected codes", permissions=["disable"])
    def disable_action(self, request: HttpRequest, queryset):
        n = credit_codes.disable_codes(list(queryset), actor=signed_in(request.user))
        self.message_user(request, f"Disabled {n} code(s); redemptions already made stay.", messages.SUCCESS)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = MintCodesForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                minted = credit_codes.mint_codes(
                    amount_nusd=d["amount_usd"],
                    count=d["count"],
                    max_redemptions=d["max_redemptions"],
                    expires_at=d["expires_at"],
                    note=d["note"],
                    actor=signed_in(request.user),
                )
            except credit_codes.CreditCodeError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                response = HttpResponse(minted.csv(), content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="tollgate-credit-codes-{minted.batch}.csv"'
                response["Cache-Control"] = "no-store, max-age=0"  # the plaintext codes are in this response only
                return response
        context = {
            **self.admin_site.each_context(request),
            "title": "Mint credit codes",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/billing/mint_credit_codes.html", context, status=400 if form.errors else 200
        )


@admin.register(CreditCodeRedemption)
class CreditCodeRedemptionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "code", "team", "amount", "redeemed_by", "ledger_entry"]
    list_filter = ["created_at", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code__public_id", "code__batch", "team__slug", "ledger_entry__public_id"]
    list_select_related = ["code", "team", "redeemed_by", "ledger_entry"]

    @admin.display(description="amount")
    def amount(self, obj: CreditCodeRedemption) -> str:
        return usd(obj.ledger_entry.amount_nusd)


@admin.register(SpendCounter)
class SpendCounterAdmin(ReadOnlyAdmin):
    """What each capped key and budgeted project spent (and holds) per month: the rows caps are enforced on."""

    list_display = ["owner", "month", "used", "updated_at"]
    list_filter = ["month"]
    search_fields = ["api_key__public_id", "api_key__name", "project__public_id", "project__name"]
    list_select_related = ["api_key", "project"]
    used = _usd("used_nusd", "used (settled + held)")

    @admin.display(description="key or project")
    def owner(self, obj: SpendCounter) -> str:
        return f"key {obj.api_key}" if obj.api_key_id else f"project {obj.project}"
