"""Seed the model catalog (idempotent: existing rows, including admin edits, are left alone).

Always: the built-in simulator with `demo-chat`, `demo-chat-mini`, `demo-embed`, `demo-embed-multimodal` and
`demo-image` (priced per image by size and quality, like OpenAI's dall-e-3). With OPENAI_API_KEY: OpenAI models
(dall-e-2 and dall-e-3 for images); with ANTHROPIC_API_KEY: Anthropic models; with OPENAI_COMPAT_BASE_URL: the
models named in OPENAI_COMPAT_MODELS (comma-separated, default "default") on that OpenAI-compatible server (vLLM,
Ollama, llama.cpp), published as `local/<name>`. A provider's key is updated when the environment's differs.

Each new model gets its opening sale prices and each route without one its upstream cost (gateway.price_book):
from the provider's `options["costs"]` when it names the upstream model (`{"<upstream model>": {"input": "0.15",
"cached": "0.075", "output": "0.60"}}` in $ per million tokens, or `{"images": {"1024x1024": "0.04"}}` in $ per
image), else the upstream's list prices below (the simulator's are made up, so the demo shows a margin).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from billing.pricing import per_million_to_per_token_nusd as per_m
from billing.pricing import usd_to_nusd
from config.env import env_str  # NAME or NAME_FILE
from gateway import price_book
from gateway.models import CatalogModel, ModelKind, Provider, ProviderKind, Route, RouteCostVersion, RoutePriority

# id, kind, $/M input, $/M cached input, $/M output, context, output cap, tools, vision, json
DEMO = [
    ("demo-chat", ModelKind.CHAT, "0.50", "0.25", "1.50", 128_000, 8_192, True, True, True),
    ("demo-chat-mini", ModelKind.CHAT, "0.15", "0.075", "0.60", 128_000, 4_096, True, False, True),
    ("demo-embed", ModelKind.EMBEDDING, "0.02", "0", "0", 8_192, 0, False, False, False),
    ("demo-embed-multimodal", ModelKind.EMBEDDING, "0.10", "0", "0", 8_192, 0, False, True, False),
]
# Capabilities beyond the columns above, for new rows: the simulator reasons when asked, and embeds images
# (an image part counts as 1,000 prompt tokens: $0.0001 at $0.10 per million).
EXTRA: dict[str, dict[str, Any]] = {
    "demo-chat": {"supports_reasoning": True},
    "demo-embed-multimodal": {"supports_multimodal_input": True, "image_input_tokens": 1_000},
}
OPENAI = [
    ("gpt-4o-mini", ModelKind.CHAT, "0.15", "0.075", "0.60", 128_000, 16_384, True, True, True),
    ("gpt-4o", ModelKind.CHAT, "2.50", "1.25", "10", 128_000, 16_384, True, True, True),
    ("text-embedding-3-small", ModelKind.EMBEDDING, "0.02", "0", "0", 8_191, 0, False, False, False),
]
# id → USD per image by size (and size/quality), as OpenAI prices them
DEMO_IMAGES = {
    "demo-image": {
        "256x256": "0.016",
        "512x512": "0.018",
        "1024x1024": "0.04",
        "1024x1024/hd": "0.08",
        "1792x1024": "0.08",
        "1792x1024/hd": "0.12",
        "1024x1792": "0.08",
        "1024x1792/hd": "0.12",
    },
}
OPENAI_IMAGES = {
    "dall-e-2": {"256x256": "0.016", "512x512": "0.018", "1024x1024": "0.02"},
    "dall-e-3": {k: v for k, v in DEMO_IMAGES["demo-image"].items() if not k.startswith(("256x", "512x"))},
}
ANTHROPIC = [
    ("claude-3-5-haiku-latest", ModelKind.CHAT, "0.80", "0.08", "4", 200_000, 8_192, True, True, True),
    ("claude-sonnet-4-0", ModelKind.CHAT, "3", "0.30", "15", 200_000, 64_000, True, True, True),
]
# What each upstream (by provider slug) charges per model ($ per million tokens: input, cached input, output; or
# $ per image): the real providers' list prices (the sale prices above start equal to them: set a markup in the
# admin), and a made-up cost for the simulator, so the demo's books show a margin.
UPSTREAM_COSTS: dict[str, dict[str, tuple[str, str, str] | dict[str, str]]] = {
    "simulator": {
        "demo-chat": ("0.30", "0.15", "0.90"),
        "demo-chat-mini": ("0.09", "0.045", "0.36"),
        "demo-embed": ("0.01", "0", "0"),
        "demo-embed-multimodal": ("0.06", "0", "0"),
        "demo-image": {
            "256x256": "0.0096",
            "512x512": "0.0108",
            "1024x1024": "0.024",
            "1024x1024/hd": "0.048",
            "1792x1024": "0.048",
            "1792x1024/hd": "0.072",
            "1024x1792": "0.048",
            "1024x1792/hd": "0.072",
        },
    },
    "openai": {
        **{row[0]: (row[2], row[3], row[4]) for row in OPENAI},
        **{name: table for name, table in OPENAI_IMAGES.items()},
    },
    "anthropic": {row[0]: (row[2], row[3], row[4]) for row in ANTHROPIC},
}


class Command(BaseCommand):
    help = "Create the demo catalog on the simulator, plus real upstreams whose credentials are in the environment."

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true")

    @transaction.atomic
    def handle(self, *args, quiet: bool = False, **options):
        created: list[str] = []
        sim = self._provider(created, "simulator", ProviderKind.SIMULATOR, "Built-in simulator", "", "")
        self._models(created, sim, DEMO)
        self._image_models(created, sim, DEMO_IMAGES)
        if env_str("OPENAI_API_KEY"):
            provider = self._provider(
                created,
                "openai",
                ProviderKind.OPENAI,
                "OpenAI",
                env_str("OPENAI_BASE_URL", "https://api.openai.com/v1"),
                env_str("OPENAI_API_KEY"),
            )
            self._models(created, provider, OPENAI)
            self._image_models(created, provider, OPENAI_IMAGES)
        if env_str("ANTHROPIC_API_KEY"):
            provider = self._provider(
                created,
                "anthropic",
                ProviderKind.ANTHROPIC,
                "Anthropic",
                env_str("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
                env_str("ANTHROPIC_API_KEY"),
            )
            self._models(created, provider, ANTHROPIC)
        if env_str("OPENAI_COMPAT_BASE_URL"):
            provider = self._provider(
                created,
                "openai-compat",
                ProviderKind.OPENAI,
                "OpenAI-compatible server",
                env_str("OPENAI_COMPAT_BASE_URL"),
                env_str("OPENAI_COMPAT_API_KEY", ""),
            )
            names = [n.strip() for n in env_str("OPENAI_COMPAT_MODELS", "default").split(",") if n.strip()]
            rows = [(f"local/{n}", ModelKind.CHAT, "0", "0", "0", 32_768, 4_096, True, False, True) for n in names]
            self._models(created, provider, rows, upstream_names=names)
        if not quiet:
            self.stdout.write(f"catalog ready ({len(created)} new: {', '.join(created) or 'nothing'})")

    def _provider(self, created, slug, kind, name, base_url, api_key) -> Provider:
        provider, new = Provider.objects.get_or_create(
            slug=slug, defaults={"kind": kind, "name": name, "base_url": base_url}
        )
        if new:
            created.append(f"provider {slug}")
        if api_key and provider.api_key != api_key:
            provider.api_key = api_key
            provider.save(update_fields=["api_key_encrypted", "updated_at"])
        return provider

    def _models(self, created, provider, rows, upstream_names=None) -> None:
        for i, (public_id, kind, price_in, price_cached, price_out, ctx, cap, tools, vision, json_) in enumerate(rows):
            model = CatalogModel.objects.filter(public_id=public_id).first()
            new = model is None
            if new:
                model = price_book.create_model(
                    public_id,
                    kind=kind,
                    owned_by=provider.slug,
                    input_price_nusd=per_m(price_in),
                    cached_price_nusd=per_m(price_cached),
                    output_price_nusd=per_m(price_out),
                    context_window=ctx,
                    max_output_tokens=cap,
                    supports_tools=tools,
                    supports_vision=vision,
                    supports_json=json_,
                    **EXTRA.get(public_id, {}),
                )
                created.append(public_id)
            upstream = upstream_names[i] if upstream_names else public_id
            self._route(created, model, provider, upstream, new)

    def _image_models(self, created, provider, models: dict[str, dict[str, str]]) -> None:
        for public_id, prices in models.items():
            model = CatalogModel.objects.filter(public_id=public_id).first()
            new = model is None
            if new:
                model = price_book.create_model(
                    public_id,
                    kind=ModelKind.IMAGE,
                    owned_by=provider.slug,
                    context_window=0,
                    max_output_tokens=0,
                    image_prices={key: usd_to_nusd(usd) for key, usd in prices.items()},
                )
                created.append(public_id)
            self._route(created, model, provider, public_id, new)

    def _route(self, created, model, provider, upstream: str, new_model: bool) -> None:
        priority = RoutePriority.PRIMARY if not model.routes.exists() else RoutePriority.BACKUP
        route, new_route = Route.objects.get_or_create(
            model=model, provider=provider, upstream_model=upstream, defaults={"priority": priority}
        )
        if new_route and not new_model:
            created.append(f"route {model.public_id}→{provider.slug}")
        if not RouteCostVersion.objects.filter(route=route).exists():
            cost = upstream_cost(provider, upstream, model.kind)
            if cost is not None:
                price_book.add_cost_version(route, cost, note="seeded")


def _cost_prices(entry, kind: str) -> price_book.Prices:
    if isinstance(entry, dict) and kind == ModelKind.IMAGE:
        table = entry.get("images", entry)
        return price_book.Prices(image_prices={key: usd_to_nusd(str(usd)) for key, usd in table.items()})
    if isinstance(entry, dict):
        entry = (entry.get("input", "0"), entry.get("cached", "0"), entry.get("output", "0"))
    price_in, price_cached, price_out = (str(value) for value in entry)
    return price_book.Prices(per_m(price_in), per_m(price_cached), per_m(price_out))


def upstream_cost(provider: Provider, upstream_model: str, kind: str) -> price_book.Prices | None:
    """A route's upstream prices: the provider's `options["costs"]` for this upstream model, else the list
    prices known for its kind of provider; None when neither names it."""
    configured = (provider.options or {}).get("costs") if isinstance(provider.options, dict) else None
    entry = configured.get(upstream_model) if isinstance(configured, dict) else None
    if entry is None:
        entry = UPSTREAM_COSTS.get(provider.slug, {}).get(upstream_model)
    if entry is None:
        return None
    return _cost_prices(entry, kind)
