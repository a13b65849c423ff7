"""Dashboard forms: they parse and validate input only; the rules live in the services they feed."""

from __future__ import annotations

import ipaddress
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.utils import timezone

from accounts.models import KeyMode, Role, Scope
from billing.pricing import usd_to_nusd

ROTATION_GRACE_CHOICES = [
    ("0", "Immediately (no grace)"),
    ("3600", "1 hour"),
    ("86400", "24 hours (recommended)"),
    ("259200", "3 days"),
    ("604800", "7 days"),
]


def usd_amount_to_nusd(value: Decimal, *, field: str = "amount") -> int:
    try:
        return usd_to_nusd(value)
    except (ValueError, InvalidOperation):
        raise forms.ValidationError(f"The {field} has too many decimal places.") from None


class SignupExtraForm(forms.Form):
    """Extra sign-up fields for allauth; the adapter creates the team from them."""

    name = forms.CharField(
        label="Your name", max_length=150, required=False, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    team_name = forms.CharField(
        label="Team name", max_length=120, required=False, help_text="You can rename it or create more teams later."
    )

    def signup(self, request, user) -> None:  # allauth hook; the adapter already did the work
        return None


class TeamCreateForm(forms.Form):
    name = forms.CharField(label="Team name", max_length=120)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the team a name.")
        return name


class InvitationSignupForm(forms.Form):
    name = forms.CharField(
        label="Your name", max_length=150, required=False, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label="Password (again)", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def __init__(self, *args, email: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        from django.contrib.auth import password_validation

        from accounts.models import User

        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            try:
                password_validation.validate_password(p1, User(email=self.email, name=data.get("name", "")))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


# --- API keys -----------------------------------------------------------------------------


class KeyLimitsForm(forms.Form):
    allowed_models = forms.MultipleChoiceField(
        label="Allowed models",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to allow every model.",
    )
    rpm_limit = forms.IntegerField(
        label="Requests per minute",
        required=False,
        min_value=1,
        max_value=10_000_000,
        help_text="Empty: the plan's limit.",
    )
    tpm_limit = forms.IntegerField(
        label="Tokens per minute",
        required=False,
        min_value=1,
        max_value=2**31 - 1,  # the column is int4
        help_text="Empty: the plan's limit.",
    )
    monthly_spend_cap_usd = forms.DecimalField(
        label="Monthly spend cap (USD)",
        required=False,
        min_value=0,
        max_value=1_000_000,
        decimal_places=6,
        help_text="Empty: no cap.",
    )
    ip_allowlist = forms.CharField(
        label="IP allow-list",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One address or CIDR range per line. Empty: any address.",
    )
    max_cost_per_request_usd = forms.DecimalField(
        label="Default max cost per request (USD)",
        required=False,
        min_value=Decimal("0.000000001"),
        max_value=1_000_000,
        decimal_places=9,
        help_text="For requests that send no Tollgate-Max-Cost: their output is cut to what it pays for. Empty: none.",
    )
    project = forms.ChoiceField(
        label="Project",
        required=False,
        help_text="Its requests must also fit the project's monthly budget. Empty: no project.",
    )

    def __init__(
        self, *args, model_choices: list[tuple[str, str]] = (), project_choices: list[tuple[str, str]] = (), **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].choices = list(model_choices)
        self.fields["project"].choices = [("", "No project"), *project_choices]

    def clean_monthly_spend_cap_usd(self) -> int | None:
        value = self.cleaned_data.get("monthly_spend_cap_usd")
        return None if value is None else usd_amount_to_nusd(value, field="spend cap")

    def clean_max_cost_per_request_usd(self) -> int | None:
        value = self.cleaned_data.get("max_cost_per_request_usd")
        return None if value is None else usd_amount_to_nusd(value, field="max cost")

    def clean_ip_allowlist(self) -> list[str]:
        entries = [line.strip() for line in self.cleaned_data["ip_allowlist"].replace(",", "\n").splitlines()]
        entries = [e for e in entries if e]
        bad = []
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                bad.append(entry)
        if bad:
            raise forms.ValidationError(f"Not an IP address or range: {', '.join(bad)}")
        if len(entries) > 100:
            raise forms.ValidationError("At most 100 entries.")
        return entries

    def limits(self) -> dict:
        d = self.cleaned_data
        return {
            "allowed_models": list(d["allowed_models"]),
            "rpm_limit": d["rpm_limit"],
            "tpm_limit": d["tpm_limit"],
            "monthly_spend_cap_nusd": d["monthly_spend_cap_usd"],
            "ip_allowlist": d["ip_allowlist"],
            "max_cost_per_request_nusd": d["max_cost_per_request_usd"],
            "project": d["project"] or None,
        }


class KeyCreateForm(KeyLimitsForm):
    name = forms.CharField(label="Name", max_length=100, help_text="e.g. “production backend”.")
    mode = forms.ChoiceField(
        label="Mode",
        choices=KeyMode.choices,
        initial=KeyMode.LIVE,
        widget=forms.RadioSelect,
        help_text="Test keys run on the simulator and never spend credit.",
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.INFERENCE, Scope.MODELS_READ, Scope.BILLING_READ],
    )
    expires_on = forms.DateField(
        label="Expires on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Empty: never expires.",
    )

    field_order = [
        "name",
        "mode",
        "scopes",
        "allowed_models",
        "rpm_limit",
        "tpm_limit",
        "monthly_spend_cap_usd",
        "max_cost_per_request_usd",
        "project",
        "ip_allowlist",
        "expires_on",
    ]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name

    def clean_expires_on(self) -> datetime | None:
        day: date | None = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        if day <= timezone.localdate():
            raise forms.ValidationError("Pick a date in the future.")
        return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class ProjectForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text="e.g. “mobile app” or “research”.")
    monthly_budget_usd = forms.DecimalField(
        label="Monthly budget (USD)",
        required=False,
        min_value=0,
        max_value=1_000_000_000,
        decimal_places=9,
        help_text="What its keys may spend together per calendar month (UTC), held requests included. Empty: none.",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the project a name.")
        return name

    def clean_monthly_budget_usd(self) -> int | None:
        value = self.cleaned_data.get("monthly_budget_usd")
        return None if value is None else usd_amount_to_nusd(value, field="budget")


class KeyRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        label="Keep the old secret working for", choices=ROTATION_GRACE_CHOICES, coerce=int, initial="86400"
    )

    def grace(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data["grace_seconds"])


# --- billing (the top-up form posts to billing.views; these two are answered by the Billing page) -------


class RedeemCodeForm(forms.Form):
    code = forms.CharField(
        label="Credit code",
        max_length=64,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "placeholder": "TG-XXXX-XXXX-XXXX",
                "autocapitalize": "characters",
            }
        ),
        error_messages={"required": "Enter the code you were given."},
    )


def _dollars_to_cents(value: Decimal) -> int:
    return int(value * 100)


class AutoRechargeForm(forms.Form):
    enabled = forms.BooleanField(label="Charge the saved card automatically", required=False)
    threshold_usd = forms.DecimalField(
        label="When available credit falls below (USD)",
        min_value=0,
        max_value=10_000,
        decimal_places=2,
        error_messages={
            "required": "Enter the amount below which to recharge, e.g. 5.",
            "invalid": "Enter an amount in dollars, e.g. 5 or 12.50.",
            "max_decimal_places": "Use whole cents, e.g. 5 or 12.50.",
            "min_value": "The threshold cannot be negative.",
            "max_value": "The threshold can be at most $10,000.",
        },
    )
    amount_usd = forms.DecimalField(
        label="Add (USD)",
        min_value=5,
        max_value=10_000,
        decimal_places=2,
        error_messages={
            "required": "Enter how much to add each time, e.g. 20.",
            "invalid": "Enter an amount in dollars, e.g. 20 or 25.50.",
            "max_decimal_places": "Use whole cents, e.g. 20 or 25.50.",
            "min_value": "Add at least $5 each time.",
            "max_value": "Add at most $10,000 each time.",
        },
    )

    def cents(self) -> dict:
        d = self.cleaned_data
        return {
            "enabled": d["enabled"],
            "threshold_cents": _dollars_to_cents(d["threshold_usd"]),
            "amount_cents": _dollars_to_cents(d["amount_usd"]),
        }


class ReceiptFilterForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    key = forms.ChoiceField(label="Key", required=False)
    model = forms.ChoiceField(label="Model", required=False)
    status = forms.ChoiceField(label="Status", required=False)
    mode = forms.ChoiceField(
        label="Mode", required=False, choices=[("", "Live and test"), ("live", "Live"), ("test", "Test")]
    )

    def __init__(self, *args, keys=(), models=(), statuses=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [("", "All keys"), *keys]
        self.fields["model"].choices = [("", "All models"), *[(m, m) for m in models]]
        self.fields["status"].choices = [("", "Any status"), *statuses]

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            self.add_error("end", "The end date is before the start date.")
        return data


RANGE_CHOICES = [("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days"), ("custom", "Custom")]


class UsageRangeForm(forms.Form):
    range = forms.ChoiceField(label="Range", choices=RANGE_CHOICES, required=False, initial="30")
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    mode = forms.ChoiceField(label="Mode", required=False, choices=[("live", "Live"), ("test", "Test")])

    def clean(self):
        data = super().clean()
        today = timezone.localdate()
        choice = data.get("range") or "30"
        if choice == "custom" or (data.get("start") or data.get("end")) and choice == "":
            start, end = data.get("start"), data.get("end") or today
            if not start:
                self.add_error("start", "Pick a start date.")
                return data
            if start > end:
                self.add_error("end", "The end date is before the start date.")
                return data
            if (end - start).days > 366:
                self.add_error("start", "Pick at most a year.")
                return data
        else:
            end = today
            start = today - timedelta(days=int(choice) - 1)
        data["start"], data["end"] = start, end
        data["mode"] = data.get("mode") or ""  # empty: the view picks what the team actually used
        return data


class BooksRangeForm(forms.Form):
    """The operator's Books page: whole UTC days, both included; this month so far by default."""

    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        today = timezone.now().date()
        since, until = data.get("since") or today.replace(day=1), data.get("until") or today
        if since > until:
            self.add_error("until", "The end date is before the start date.")
        elif (until - since).days > 366:
            self.add_error("since", "Pick at most a year (the books command takes longer ranges).")
        data["since"], data["until"] = since, until
        return data


# --- images -----------------------------------------------------------------------------


class ImageGenerateForm(forms.Form):
    """The Images page's generate form. Sizes and qualities come from the image models' price tables; the
    gateway checks them again (the catalog may change between page and post)."""

    mode = forms.ChoiceField(
        label="Pay with",
        choices=[("test", "Test mode (simulator, no charge)"), ("live", "The team's wallet")],
        initial="test",
    )
    model = forms.ChoiceField(label="Model")
    prompt = forms.CharField(label="Prompt", max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    n = forms.IntegerField(label="Images", min_value=1, max_value=10, initial=1)
    size = forms.ChoiceField(label="Size")
    quality = forms.ChoiceField(label="Quality", required=False)

    def __init__(self, *args, models=(), **kwargs):
        from gateway import image_pricing

        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m.id, m.id) for m in models]
        sizes, qualities = [], []
        for m in models:
            sizes += [s for s in image_pricing.sizes(m.image_prices) if s not in sizes]
            qualities += [q for q in image_pricing.qualities(m.image_prices) if q not in qualities]
        self.fields["size"].choices = [(s, s) for s in sizes]
        self.fields["size"].initial = image_pricing.DEFAULT_SIZE if image_pricing.DEFAULT_SIZE in sizes else None
        self.fields["quality"].choices = [("", "standard"), *[(q, q) for q in qualities]]

    def clean_prompt(self):
        prompt = self.cleaned_data["prompt"]
        if not prompt.strip():
            raise forms.ValidationError("Describe the image.")
        return prompt


# --- members ----------------------------------------------------------------------------


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.DEVELOPER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


# --- team settings ----------------------------------------------------------------------


class TeamSettingsForm(TeamCreateForm):
    store_completions = forms.BooleanField(
        label="Store completions",
        required=False,
        help_text="Keep the full text of every chat completion, as if each request set store: true.",
    )


class TransferOwnershipForm(forms.Form):
    membership = forms.TypedChoiceField(label="New owner", coerce=int)

    def __init__(self, *args, members=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["membership"].choices = [("", "Choose a member…")] + [
            (m.pk, f"{m.user.email} ({m.get_role_display()})") for m in members
        ]


class DeleteTeamForm(forms.Form):
    confirm = forms.CharField(
        label="Type the team's slug to confirm",
        max_length=60,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, slug: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slug = slug

    def clean_confirm(self) -> str:
        typed = self.cleaned_data["confirm"].strip()
        if typed != self.slug:
            raise forms.ValidationError(f"Type “{self.slug}” exactly to delete the team.")
        return typed


# --- webhooks (Settings → Webhooks; the rules live in webhooks.services) ------------------------


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL",
        max_length=2048,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/webhooks/tollgate", "inputmode": "url"}),
        help_text="Tollgate POSTs signed JSON events here. It must answer with a 2xx status within 10 seconds.",
    )
    description = forms.CharField(label="Description", max_length=300, required=False)
    all_events = forms.BooleanField(
        label="Send every event type (including types added later)", required=False, initial=True
    )
    events = forms.MultipleChoiceField(
        label="Or only these event types",
        choices=[],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, **kwargs) -> None:
        from webhooks.events import EVENT_TYPES

        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [(t, f"{t} — {text}") for t, text in EVENT_TYPES.items()]

    @classmethod
    def for_endpoint(cls, endpoint) -> EndpointForm:
        everything = "*" in endpoint.events
        return cls(
            initial={
                "url": endpoint.url,
                "description": endpoint.description,
                "all_events": everything,
                "events": [] if everything else endpoint.events,
                "enabled": endpoint.enabled,
            }
        )

    def clean(self):
        data = super().clean()
        if not data.get("all_events") and not data.get("events"):
            self.add_error("events", "Choose at least one event type, or send every type.")
        return data

    def values(self) -> dict:
        d = self.cleaned_data
        return {
            "url": d["url"].strip(),
            "description": d["description"].strip(),
            "events": ["*"] if d["all_events"] else list(d["events"]),
            "enabled": d["enabled"],
        }


class SecretRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        label="Keep signing with the old secret too for", choices=ROTATION_GRACE_CHOICES, coerce=int, initial="86400"
    )


class LowBalanceForm(forms.Form):
    threshold_usd = forms.DecimalField(
        label="Send balance.low when the balance falls below (USD)",
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(1_000_000),
        decimal_places=2,
        help_text="Once each time the balance crosses below it. Empty: off.",
    )

    def threshold_cents(self) -> int | None:
        value = self.cleaned_data["threshold_usd"]
        return None if value is None else int(value * 100)
