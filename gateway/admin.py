"""Operators edit the catalog here. Provider keys are write-only; prices are entered per million tokens."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin

from billing import money
from billing.money import per_million, usd
from billing.pricing import per_million_to_per_token_nusd, per_million_usd, usd_to_nusd
from gateway import image_pricing
from gateway.models import CatalogModel, IdempotencyRecord, Provider, Route, StoredCompletion, StoredResponse


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(required=False, assume_scheme="https", max_length=300)
    new_api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: leave empty to keep the stored key. Stored encrypted; never shown again.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored API key", required=False)

    class Meta:
        model = Provider
        fields = [
            "slug",
            "name",
            "kind",
            "base_url",
            "timeout_seconds",
            "connect_timeout_seconds",
            "enabled",
            "options",
        ]

    def save(self, commit=True):
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.api_key = ""
        elif self.cleaned_data.get("new_api_key"):
            provider.api_key = self.cleaned_data["new_api_key"]
        if commit:
            provider.save()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["slug", "kind", "base_url", "enabled", "key_set", "timeout_seconds"]
    list_filter = ["kind", "enabled"]
    search_fields = ["slug", "name", "base_url"]

    @admin.display(boolean=True, description="key set")
    def key_set(self, obj: Provider) -> bool:
        return obj.has_api_key


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0
    fields = ["provider", "upstream_model", "priority", "order", "weight", "enabled"]


PRICE_FIELDS = {
    "input_price_nusd": "input_per_million",
    "cached_price_nusd": "cached_per_million",
    "output_price_nusd": "output_per_million",
}


class CatalogModelForm(forms.ModelForm):
    input_per_million = forms.DecimalField(label="Input $ / 1M tokens", min_value=Decimal(0), decimal_places=9)
    cached_per_million = forms.DecimalField(
        label="Cached input $ / 1M tokens", min_value=Decimal(0), decimal_places=9, initial=Decimal(0)
    )
    output_per_million = forms.DecimalField(
        label="Output $ / 1M tokens", min_value=Decimal(0), decimal_places=9, initial=Decimal(0)
    )

    image_prices_usd = forms.CharField(
        label="Image prices ($ per image)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 40}),
        help_text="Image models only, one per line: SIZE = USD or SIZE/QUALITY = USD, e.g. "
        "“1024x1024 = 0.04” and “1024x1024/hd = 0.08”. The sizes listed are the sizes the model offers.",
    )

    class Meta:
        model = CatalogModel
        fields = [
            "public_id",
            "kind",
            "owned_by",
            "description",
            "context_window",
            "max_output_tokens",
            "supports_tools",
            "supports_vision",
            "supports_json",
            "supports_reasoning",
            "supports_multimodal_input",
            "image_input_tokens",
            "enabled",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for field, form_field in PRICE_FIELDS.items():
                self.fields[form_field].initial = per_million_usd(getattr(self.instance, field))
            self.fields["image_prices_usd"].initial = "\n".join(
                f"{key} = {money.exact(nusd)}" for key, nusd in (self.instance.image_prices or {}).items()
            )

    def clean(self):
        data = super().clean()
        for field, form_field in PRICE_FIELDS.items():
            value = data.get(form_field)
            if value is None:
                continue
            try:
                data[field] = per_million_to_per_token_nusd(value)
            except ValueError:
                self.add_error(
                    form_field,
                    "Must be a whole number of nano-dollars per token (multiples of $0.001 per million tokens).",
                )
        try:
            # The model's own clean() then checks the table against the kind.
            self.instance.image_prices = parse_image_prices(data.get("image_prices_usd") or "")
        except image_pricing.PriceTableError as exc:
            self.add_error("image_prices_usd", exc.message)
        return data

    def save(self, commit=True):
        model = super().save(commit=False)
        for field in PRICE_FIELDS:
            if field in self.cleaned_data:
                setattr(model, field, self.cleaned_data[field])
        if commit:
            model.save()
        return model


def parse_image_prices(text: str) -> dict[str, int]:
    """The admin's "SIZE[/QUALITY] = USD" lines → the model's price table in nano-dollars (exact)."""
    table: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        key, sep, amount = line.partition("=")
        if not sep:
            raise image_pricing.PriceTableError(f"Line {number}: write SIZE = USD, e.g. 1024x1024 = 0.04.")
        try:
            table[key.strip()] = usd_to_nusd(amount.strip().removeprefix("$"))
        except (ValueError, ArithmeticError):
            raise image_pricing.PriceTableError(
                f"Line {number}: '{amount.strip()}' is not an amount in dollars (at most 9 decimals)."
            ) from None
    return image_pricing.parse_table(table)


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    form = CatalogModelForm
    inlines = [RouteInline]
    list_display = ["public_id", "kind", "input_per_m", "output_per_m", "context_window", "enabled"]
    list_filter = ["kind", "enabled", "supports_tools", "supports_vision"]
    search_fields = ["public_id"]

    @admin.display(description="input $/1M (or per image)")
    def input_per_m(self, obj: CatalogModel) -> str:
        if obj.kind == "image":
            return ", ".join(f"{k} {usd(v)}" for k, v in (obj.image_prices or {}).items())
        return usd(per_million(obj.input_price_nusd))

    @admin.display(description="output $/1M")
    def output_per_m(self, obj: CatalogModel) -> str:
        return usd(per_million(obj.output_price_nusd))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StoredCompletion)
class StoredCompletionAdmin(ReadOnlyAdmin):
    list_display = ["completion_id", "team", "model", "receipt_id", "created_at"]
    list_filter = ["model"]
    search_fields = ["completion_id", "request_id", "receipt_id"]


@admin.register(StoredResponse)
class StoredResponseAdmin(ReadOnlyAdmin):
    list_display = ["response_id", "team", "model", "previous_response_id", "receipt_id", "created_at"]
    list_filter = ["model"]
    search_fields = ["response_id", "request_id", "receipt_id", "previous_response_id"]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["key", "team", "endpoint", "status", "response_status", "created_at", "expires_at"]
    list_filter = ["status", "endpoint"]
    search_fields = ["key", "request_id"]
    exclude = ["response_body"]
