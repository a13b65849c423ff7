"""Operators edit the catalog here. Provider keys are write-only; prices are entered per million tokens (or per
image) and kept as versions: saving other prices adds a version with an effective time (gateway.price_book),
the history below each model and route is read-only."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing import money
from billing.money import per_million, usd
from billing.pricing import per_million_to_per_token_nusd, per_million_usd, usd_to_nusd
from gateway import image_pricing, price_book
from gateway.models import (
    CatalogModel,
    IdempotencyRecord,
    PriceVersion,
    Provider,
    Route,
    RouteCostVersion,
    StoredCompletion,
    StoredResponse,
)


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


def _cost_summary(version) -> str:
    if version is None:
        return "not entered"
    if version.image_prices:
        return ", ".join(f"{k} {usd(v)}" for k, v in version.image_prices.items())
    return (
        f"in {usd(per_million(version.input_price_nusd))} · cached {usd(per_million(version.cached_price_nusd))} · "
        f"out {usd(per_million(version.output_price_nusd))} /1M"
    )


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0
    fields = ["provider", "upstream_model", "priority", "order", "weight", "enabled", "upstream_cost"]
    readonly_fields = ["upstream_cost"]

    @admin.display(description="upstream cost now")
    def upstream_cost(self, obj: Route) -> str:
        if not obj.pk:
            return "enter it on the route's page once saved"
        url = reverse("admin:gateway_route_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _cost_summary(price_book.current_cost(obj)))


PRICE_FIELDS = {
    "input_price_nusd": "input_per_million",
    "cached_price_nusd": "cached_per_million",
    "output_price_nusd": "output_per_million",
}


class _PricesForm(forms.ModelForm):
    """Prices per million tokens (or per image) in dollars; saving with other prices than the latest version adds
    a version (gateway.price_book) effective at `effective_at`: a change never edits the prices in force."""

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
    effective_at = forms.DateTimeField(
        label="New prices take effect at",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Empty: as soon as every server has them (a few seconds). Only used when the prices above "
        "differ from the latest version; the prices in force are never edited, a change is a new version.",
    )
    price_note = forms.CharField(label="Why (kept with the version)", required=False, max_length=300)

    def _kind(self) -> str:
        raise NotImplementedError

    def _latest(self):
        raise NotImplementedError

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        latest = self._latest() if self.instance.pk else None
        if latest is not None:
            for field, form_field in PRICE_FIELDS.items():
                self.fields[form_field].initial = per_million_usd(getattr(latest, field))
            self.fields["image_prices_usd"].initial = "\n".join(
                f"{key} = {money.exact(nusd)}" for key, nusd in (latest.image_prices or {}).items()
            )

    def clean(self):
        super().clean()
        data = self.cleaned_data
        values = {}
        for field, form_field in PRICE_FIELDS.items():
            value = data.get(form_field)
            if value is None:
                continue
            try:
                values[field] = per_million_to_per_token_nusd(value)
            except ValueError:
                self.add_error(
                    form_field,
                    "Must be a whole number of nano-dollars per token (multiples of $0.001 per million tokens).",
                )
        try:
            table = parse_image_prices(data.get("image_prices_usd") or "")
        except image_pricing.PriceTableError as exc:
            self.add_error("image_prices_usd", exc.message)
            return data
        if self.errors:
            return data
        prices = price_book.Prices(
            values.get("input_price_nusd", 0),
            values.get("cached_price_nusd", 0),
            values.get("output_price_nusd", 0),
            table,
        )
        try:
            prices = price_book.validate(data.get("kind") or self._kind(), prices)
        except price_book.PriceBookError as exc:
            self.add_error("image_prices_usd" if exc.field == "image_prices" else None, exc.message)
            return data
        latest = self._latest() if self.instance.pk else None
        data["new_prices"] = None if latest is not None and price_book.Prices.of(latest) == prices else prices
        if data["new_prices"] is not None:
            try:
                price_book.check_effective(data.get("effective_at"), first=latest is None)
            except price_book.PriceBookError as exc:
                self.add_error("effective_at", exc.message)
        return data


class CatalogModelForm(_PricesForm):
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

    def _kind(self) -> str:
        return self.instance.kind

    def _latest(self):
        return price_book.latest_price(self.instance)


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


class _VersionInline(admin.TabularInline):
    """The price history, read-only: versions are only ever added (by saving new prices above)."""

    extra = 0
    can_delete = False
    ordering = ["-effective_at", "-id"]
    fields = readonly_fields = (
        "public_id",
        "effective_at",
        "input_per_m",
        "cached_per_m",
        "output_per_m",
        "images",
        "note",
        "created_by",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="input $/1M")
    def input_per_m(self, obj) -> str:
        return usd(per_million(obj.input_price_nusd))

    @admin.display(description="cached $/1M")
    def cached_per_m(self, obj) -> str:
        return usd(per_million(obj.cached_price_nusd))

    @admin.display(description="output $/1M")
    def output_per_m(self, obj) -> str:
        return usd(per_million(obj.output_price_nusd))

    @admin.display(description="per image")
    def images(self, obj) -> str:
        return ", ".join(f"{k} {usd(v)}" for k, v in (obj.image_prices or {}).items()) or "—"


class PriceVersionInline(_VersionInline):
    model = PriceVersion
    verbose_name = "price version"
    verbose_name_plural = "price history (sale prices; the version in force is the latest whose time has come)"


class RouteCostVersionInline(_VersionInline):
    model = RouteCostVersion
    verbose_name = "cost version"
    verbose_name_plural = "upstream cost history"


class _PricedAdmin(admin.ModelAdmin):
    add_version: ClassVar[Callable[..., Any]] = staticmethod(price_book.add_price_version)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        prices = form.cleaned_data.get("new_prices")
        if prices is not None:
            version = self.add_version(
                obj,
                prices,
                effective_at=form.cleaned_data.get("effective_at"),
                actor=request.user,
                note=form.cleaned_data.get("price_note") or "",
            )
            self.message_user(
                request, f"New prices {version.public_id} take effect at {version.effective_at:%Y-%m-%d %H:%M:%S} UTC."
            )


@admin.register(CatalogModel)
class CatalogModelAdmin(_PricedAdmin):
    form = CatalogModelForm
    inlines = [RouteInline, PriceVersionInline]
    list_display = ["public_id", "kind", "input_per_m", "output_per_m", "scheduled", "context_window", "enabled"]
    list_filter = ["kind", "enabled", "supports_tools", "supports_vision"]
    search_fields = ["public_id"]

    def get_inlines(self, request, obj=None):
        return [RouteInline, PriceVersionInline] if obj is not None else [RouteInline]  # no history before it exists

    def get_fieldsets(self, request, obj=None):
        prices = ["input_per_million", "cached_per_million", "output_per_million", "image_prices_usd"]
        fields = [f for f in CatalogModelForm.Meta.fields]
        return [
            (None, {"fields": fields}),
            ("Prices (a change adds a version)", {"fields": [*prices, "effective_at", "price_note"]}),
        ]

    @admin.display(description="input $/1M now (or per image)")
    def input_per_m(self, obj: CatalogModel) -> str:
        version = price_book.current_price(obj)
        if version is None:
            return "—"
        if obj.kind == "image":
            return ", ".join(f"{k} {usd(v)}" for k, v in (version.image_prices or {}).items())
        return usd(per_million(version.input_price_nusd))

    @admin.display(description="output $/1M now")
    def output_per_m(self, obj: CatalogModel) -> str:
        version = price_book.current_price(obj)
        return usd(per_million(version.output_price_nusd)) if version is not None else "—"

    @admin.display(description="next change")
    def scheduled(self, obj: CatalogModel) -> str:
        upcoming = obj.price_versions.filter(effective_at__gt=timezone.now()).order_by("effective_at", "id").first()
        return f"{upcoming.effective_at:%Y-%m-%d %H:%M} UTC" if upcoming else "—"


class RouteForm(_PricesForm):
    input_per_million = forms.DecimalField(
        label="Upstream input $ / 1M tokens",
        min_value=Decimal(0),
        decimal_places=9,
        help_text="What the upstream charges you, per prompt token (per embedding token for embedding models).",
    )

    class Meta:
        model = Route
        fields = ["model", "provider", "upstream_model", "priority", "order", "weight", "enabled"]

    def _kind(self) -> str:
        model = self.cleaned_data.get("model") if hasattr(self, "cleaned_data") else None
        return (model or self.instance.model).kind

    def _latest(self):
        return price_book.latest_cost(self.instance)


@admin.register(Route)
class RouteAdmin(_PricedAdmin):
    """A route and its upstream's own prices (the operator's cost), versioned like the sale prices."""

    form = RouteForm
    add_version = staticmethod(price_book.add_cost_version)
    inlines = [RouteCostVersionInline]
    list_display = ["__str__", "enabled", "cost_now"]
    list_filter = ["enabled", "priority", "provider"]
    search_fields = ["model__public_id", "upstream_model", "provider__slug"]
    list_select_related = ["model", "provider"]

    def get_inlines(self, request, obj=None):
        return [RouteCostVersionInline] if obj is not None else []

    def get_fieldsets(self, request, obj=None):
        costs = ["input_per_million", "cached_per_million", "output_per_million", "image_prices_usd"]
        return [
            (None, {"fields": RouteForm.Meta.fields}),
            (
                "Upstream cost (what the provider charges; a change adds a version)",
                {"fields": [*costs, "effective_at", "price_note"]},
            ),
        ]

    @admin.display(description="upstream cost now")
    def cost_now(self, obj: Route) -> str:
        return _cost_summary(price_book.current_cost(obj))


@admin.register(PriceVersion)
class PriceVersionAdmin(admin.ModelAdmin):
    """Every sale price version, read-only (receipts name them)."""

    list_display = ["public_id", "model", "effective_at", "input_per_m", "output_per_m", "created_by", "created_at"]
    list_filter = ["model"]
    search_fields = ["public_id", "model__public_id"]
    readonly_fields = [f.name for f in PriceVersion._meta.fields]
    input_per_m = _VersionInline.input_per_m
    output_per_m = _VersionInline.output_per_m

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
