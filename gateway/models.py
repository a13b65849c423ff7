"""The model catalog (providers, models, routes), its price book (sale price versions per model, upstream cost
versions per route), stored completions, idempotency records and image jobs.

Prices are integers of nano-dollars per token (shown per million tokens in the admin), or per image for image
models; they live in versions with an effective time, never on the model or route itself (gateway.price_book).
Provider API keys are encrypted at rest (gateway.crypto) and never displayed.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from config.ids import new_id
from gateway import crypto


class ProviderKind(models.TextChoices):
    SIMULATOR = "simulator", "Built-in simulator"
    OPENAI = "openai", "OpenAI or OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic Messages"


class Provider(models.Model):
    slug = models.SlugField(max_length=60, unique=True, help_text="Shown to clients in the routing block.")
    name = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=20, choices=ProviderKind.choices, default=ProviderKind.OPENAI)
    base_url = models.URLField(max_length=300, blank=True)
    api_key_encrypted = models.TextField(blank=True, editable=False)
    timeout_seconds = models.FloatField(default=300.0, help_text="Longest an upstream call may take.")
    connect_timeout_seconds = models.FloatField(default=10.0)
    enabled = models.BooleanField(default=True)
    options = models.JSONField(default=dict, blank=True, help_text="Provider-specific options (JSON).")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, plaintext: str) -> None:
        self.api_key_encrypted = crypto.encrypt(plaintext or "")

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)


class ModelKind(models.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDING = "embedding", "Embedding"
    IMAGE = "image", "Image"


class CatalogModel(models.Model):
    public_id = models.CharField(max_length=120, unique=True, help_text="What clients send as `model`.")
    kind = models.CharField(max_length=20, choices=ModelKind.choices, default=ModelKind.CHAT)
    owned_by = models.CharField(max_length=60, default="tollgate")
    description = models.CharField(max_length=300, blank=True)
    context_window = models.PositiveIntegerField(default=128_000)
    max_output_tokens = models.PositiveIntegerField(default=4_096)
    supports_tools = models.BooleanField(default=False)
    supports_vision = models.BooleanField(default=False)
    supports_json = models.BooleanField(default=False)
    supports_reasoning = models.BooleanField(
        default=False, help_text="Accepts a reasoning effort (the Responses API's reasoning.effort is passed on)."
    )
    supports_multimodal_input = models.BooleanField(
        default=False, help_text="Embeddings: accepts an input of text and image parts, embedded as one vector."
    )
    image_input_tokens = models.PositiveIntegerField(
        default=0,
        help_text="Embeddings: what one image part of a multimodal input counts as, in prompt tokens (billed at "
        "the input price).",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["public_id"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.public_id


class RoutePriority(models.TextChoices):
    PRIMARY = "primary", "Primary"
    BACKUP = "backup", "Backup"


class Route(models.Model):
    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="routes")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="routes")
    upstream_model = models.CharField(max_length=200, help_text="The model name the provider expects.")
    priority = models.CharField(max_length=10, choices=RoutePriority.choices, default=RoutePriority.PRIMARY)
    order = models.PositiveSmallIntegerField(default=0, help_text="Tie-break within a priority (lower first).")
    weight = models.PositiveSmallIntegerField(default=100, help_text="Share among routes of equal priority/order.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "provider", "upstream_model"], name="route_unique_target"),
        ]

    def __str__(self) -> str:
        return f"{self.model} → {self.provider}:{self.upstream_model} ({self.priority})"


# --- the price book: sale prices per model and upstream costs per route, versioned -------------------------


def _price_version_id() -> str:
    return new_id("pv")


def _cost_version_id() -> str:
    return new_id("cv")


class AppendOnly(Exception):
    pass


class _VersionQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ARG002
        raise AppendOnly("Price versions are never edited: add a new version (gateway.price_book).")

    def delete(self):
        raise AppendOnly("Price versions are never deleted.")


class _Version(models.Model):
    """Prices from `effective_at` until the next version's. Appended, never changed or deleted: a change is a new
    version with an effective time (gateway.price_book), so every receipt's prices stay readable. Token prices
    are nano-dollars per token; image prices a table of nano-dollars per image by size (gateway.image_pricing)."""

    effective_at = models.DateTimeField(db_index=True)
    input_price_nusd = models.BigIntegerField(default=0, help_text="Per prompt (or embedding) token, nano-dollars.")
    cached_price_nusd = models.BigIntegerField(default=0, help_text="Per cached prompt token, nano-dollars.")
    output_price_nusd = models.BigIntegerField(default=0, help_text="Per completion token, nano-dollars.")
    image_prices = models.JSONField(default=dict, blank=True, help_text="Nano-dollars per image by size[/quality].")
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = _VersionQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["effective_at", "id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnly("Price versions are never edited: add a new version (gateway.price_book).")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("Price versions are never deleted.")


def _prices_non_negative(name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=models.Q(input_price_nusd__gte=0)
        & models.Q(cached_price_nusd__gte=0)
        & models.Q(output_price_nusd__gte=0),
        name=name,
    )


class PriceVersion(_Version):
    """What a model sells for: the price version in force when a request's hold is placed prices it, and its id is on
    the receipt."""

    public_id = models.CharField(max_length=40, unique=True, default=_price_version_id, editable=False)
    model = models.ForeignKey(CatalogModel, on_delete=models.PROTECT, related_name="price_versions")

    class Meta(_Version.Meta):
        verbose_name = "price version"
        constraints = [_prices_non_negative("priceversion_prices_non_negative")]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.model_id} from {self.effective_at:%Y-%m-%d %H:%M:%S})"


class RouteCostVersion(_Version):
    """What a route's upstream charges the operator (its own list prices): a receipt's upstream cost is its usage at
    the serving route's cost version in force when the hold was placed."""

    public_id = models.CharField(max_length=40, unique=True, default=_cost_version_id, editable=False)
    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="cost_versions")

    class Meta(_Version.Meta):
        verbose_name = "route cost version"
        constraints = [_prices_non_negative("routecostversion_prices_non_negative")]

    def __str__(self) -> str:
        return f"{self.public_id} (route {self.route_id} from {self.effective_at:%Y-%m-%d %H:%M:%S})"


class StoredCompletion(models.Model):
    """A chat completion kept because the request said `store: true` or the team stores everything.

    Without storage only the receipt (metadata) remains; the completion id is derived from the
    request id so GET /v1/chat/completions/{id} can still find that metadata."""

    completion_id = models.CharField(max_length=60, unique=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="stored_completions")
    request_id = models.CharField(max_length=40, db_index=True)
    receipt_id = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=120)
    # JSON text rather than jsonb: PostgreSQL's jsonb refuses "\u0000", which a prompt may contain.
    request = models.TextField(help_text="The request as sent upstream (JSON).")
    response = models.TextField(help_text="The response body exactly as returned (costs are exact JSON numbers).")
    metadata = models.TextField(default="{}", blank=True, help_text="The request's metadata (JSON).")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.completion_id


class StoredResponse(models.Model):
    """A Responses API object kept because the request had `store` (the default, as OpenAI's) or the team stores
    everything: retrievable, deletable, and continued by `previous_response_id`.

    `context` is the conversation before this response's own input (the items of the responses it continues),
    `input_items` its own input, `response` the object as returned; together they are what a continuation
    prepends. All three are JSON text rather than jsonb: PostgreSQL's jsonb refuses "\u0000"."""

    response_id = models.CharField(max_length=60, unique=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="stored_responses")
    request_id = models.CharField(max_length=40, db_index=True)
    receipt_id = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=120)
    previous_response_id = models.CharField(max_length=60, blank=True)
    context = models.TextField(default="[]", help_text="Items of the conversation before this input (JSON).")
    input_items = models.TextField(default="[]", help_text="This response's own input items, with ids (JSON).")
    response = models.TextField(help_text="The response object exactly as returned (JSON).")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.response_id


class IdempotencyStatus(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    DONE = "done", "Done"


class IdempotencyRecord(models.Model):
    """One Idempotency-Key per team for 24 h: the body fingerprint and, once done, the response."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=40)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of endpoint and request body.")
    request_id = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=IdempotencyStatus.choices, default=IdempotencyStatus.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_content_type = models.CharField(max_length=60, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    # The process serving the first request: while in flight, the record lives as long as that process does
    # (billing.leases); a record whose process died is taken over by the next request with the same key.
    lease = models.ForeignKey("billing.HoldLease", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["team", "key"], name="idempotency_unique_team_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


# --- image jobs -------------------------------------------------------------------------------------------


class ImageJobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired (not started in time)"
    MODERATION_REJECTED = "moderation_rejected", "Rejected by moderation"


TERMINAL_STATUSES = frozenset(
    {
        ImageJobStatus.SUCCEEDED,
        ImageJobStatus.FAILED,
        ImageJobStatus.CANCELLED,
        ImageJobStatus.EXPIRED,
        ImageJobStatus.MODERATION_REJECTED,
    }
)
OPEN_STATUSES = (ImageJobStatus.PENDING, ImageJobStatus.PROCESSING)


class ImageJob(models.Model):
    """An asynchronous image generation (POST /v1/images). The job owns the credit hold placed at submit time:
    it ends that hold exactly once, in the transaction that moves the job to a terminal status (gateway.image_jobs).

    `start_by` is when a pending job expires unpicked; a processing job whose `started_at` is older than the
    run budget belonged to a worker that died and is retried or failed. The hold expires at `hold_expires_at`,
    after both."""

    public_id = models.CharField(max_length=40, unique=True, help_text="img_…")
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="image_jobs")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key_label = models.CharField(max_length=60, blank=True)
    is_test = models.BooleanField(default=False)
    request_id = models.CharField(max_length=40, db_index=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=120)
    prompt = models.TextField()
    n = models.PositiveSmallIntegerField(default=1)
    size = models.CharField(max_length=40)
    quality = models.CharField(max_length=20, blank=True)
    style = models.CharField(max_length=20, blank=True)
    upstream_payload = models.TextField(default="{}", help_text="What goes to the provider (JSON).")
    status = models.CharField(max_length=20, choices=ImageJobStatus.choices, default=ImageJobStatus.PENDING)
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # money: the hold placed at submit (none for test keys) and the price it was computed from
    hold_id = models.BigIntegerField(null=True, blank=True)
    hold_public_id = models.CharField(max_length=40, blank=True)
    hold_amount_nusd = models.BigIntegerField(default=0)
    hold_counted = models.BooleanField(default=False, help_text="The hold moved a key's or project's monthly counter.")
    project = models.ForeignKey("accounts.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    unit_price_nusd = models.BigIntegerField(default=0)
    price_version = models.CharField(
        max_length=40, blank=True, help_text="The price version the hold was placed under."
    )
    max_cost_nusd = models.BigIntegerField(null=True, blank=True)
    receipt_id = models.CharField(max_length=40, blank=True)
    total_cost_nusd = models.BigIntegerField(default=0)
    images_produced = models.PositiveSmallIntegerField(default=0)
    # where it ran
    provider = models.CharField(max_length=120, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    route_attempts = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker picked the job up.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    start_by = models.DateTimeField(help_text="A job still pending then expires.")
    hold_expires_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"]),
            models.Index(fields=["team", "status", "-created_at"]),
            models.Index(fields=["status", "start_by"]),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _output_id() -> str:
    return new_id("imgf")


class ImageOutput(models.Model):
    """One stored image: an async job's output or a synchronous generation's `url` result. Served anonymously
    at a signed link (gateway.image_files) until `expires_at`; the file lives in Django's default storage."""

    public_id = models.CharField(max_length=40, unique=True, default=_output_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="image_outputs")
    job = models.ForeignKey(ImageJob, null=True, blank=True, on_delete=models.CASCADE, related_name="outputs")
    request_id = models.CharField(max_length=40, db_index=True)
    index = models.PositiveSmallIntegerField(default=0)
    storage_name = models.CharField(max_length=300)
    content_type = models.CharField(max_length=40, default="image/png")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    bytes = models.PositiveIntegerField(default=0)
    revised_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["index", "id"]

    def __str__(self) -> str:
        return self.public_id
