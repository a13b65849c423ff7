"""Operators' view of the money: everything read-only; the only write is "Adjust balance", which goes
through billing.services.adjust_balance (ledger entry + audit row, reason required)."""

from __future__ import annotations

from decimal import InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpRequest
from django.template.response import TemplateResponse

from billing.errors import BillingError
from billing.models import Hold, LedgerEntry, Receipt, StripeEvent, TopUp, Wallet
from billing.money import usd
from billing.pricing import usd_to_nusd
from billing.services import MAX_ADJUSTMENT_NUSD, adjust_balance


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


class AdjustBalanceForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        max_digits=20,
        decimal_places=9,
        help_text="Positive credits the wallet, negative debits it. Exact to the nano-dollar.",
    )
    reason = forms.CharField(
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required; recorded on the ledger entry and in the audit log.",
    )

    def clean_amount_usd(self) -> int:
        amount = self.cleaned_data["amount_usd"]
        try:
            nusd = usd_to_nusd(amount)
        except (ValueError, InvalidOperation):
            raise forms.ValidationError("Use at most nine decimal places.") from None
        if nusd == 0:
            raise forms.ValidationError("The amount cannot be zero.")
        if abs(nusd) > MAX_ADJUSTMENT_NUSD:
            raise forms.ValidationError(f"One adjustment is limited to {usd(MAX_ADJUSTMENT_NUSD)} either way.")
        return nusd

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
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
                amount, reason = form.cleaned_data["amount_usd"], form.cleaned_data["reason"]
                done = 0
                for wallet in queryset.select_related("team"):
                    try:
                        adjust_balance(wallet.team, amount, request.user, reason)
                    except BillingError as exc:
                        self.message_user(request, f"{wallet.team}: {exc.message}", messages.ERROR)
                    else:
                        done += 1
                if done:
                    self.message_user(request, f"Adjusted {done} wallet(s) by {usd(amount)}.", messages.SUCCESS)
                return None
        else:
            form = AdjustBalanceForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Adjust balance",
            "form": form,
            "wallets": [(w.team, usd(w.balance_nusd)) for w in queryset.select_related("team")],
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
    search_fields = ["public_id", "reference", "reason", "wallet__team__slug", "actor__email"]
    date_hierarchy = "created_at"
    list_select_related = ["wallet__team", "actor"]
    amount = _usd("amount_nusd", "amount")
    balance_after = _usd("balance_after_nusd", "balance after")


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "public_id",
        "team",
        "key_label",
        "model_requested",
        "provider",
        "status",
        "is_test",
        "prompt_tokens",
        "completion_tokens",
        "total_cost",
    ]
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
