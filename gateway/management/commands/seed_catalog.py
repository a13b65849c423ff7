"""Seed the model catalog (idempotent: existing rows, including admin edits, are left alone).

Always: the built-in simulator with `demo-chat`, `demo-chat-mini`, `demo-embed`, `demo-embed-multimodal` and
`demo-image` (priced per image by size and quality, like OpenAI's dall-e-3). With OPENAI_API_KEY: OpenAI models
(dall-e-2 and dall-e-3 for images); with ANTHROPIC_API_KEY: Anthropic models; with OPENAI_COMPAT_BASE_URL: the
models named in OPENAI_COMPAT_MODELS (comma-separated, default "default") on that OpenAI-compatible server (vLLM,
Ollama, llama.cpp), published as `local/<name>`. A provider's key is updated when the environment's differs.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from billing.pricing import per_million_to_per_token_nusd as per_m
from billing.pricing import usd_to_nusd
from config.env import env_str  # NAME or NAME_FILE
from gateway.models import CatalogModel, ModelKind, Provider, ProviderKind, Route, RoutePriority

# id, kind, $/M input, $/M cached input, $/M output, context, output cap, tools, vision, json
DEMO = [
    ("demo-chat", ModelKind.CHAT, "0.50", "0.25", "1.50", 128_000, 8_192, True, True, True),
    ("demo-chat-mini", ModelKind.CHAT, "0.15", "0.075", "0.60", 128_000, 4_096, True, False, True),
    ("demo-embed", ModelKind.EMBEDDING, "0.02", "0", "0", 8_192, 0, False, False, False),
    ("demo-embed-multimodal", ModelKind.EMBEDDING, "0.10", "0", "0", 8_192, 0, False, True, False),
]
# Capabilities beyond the columns above, for new rows: the simulator reasons when asked, and embeds images
# (an image part counts as 1,000 prompt tokens: $0.0001 at $0.10 per million).
EXTRA = {
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
            model, new = CatalogModel.objects.get_or_create(
                public_id=public_id,
                defaults=dict(
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
                ),
            )
            if new:
                created.append(public_id)
            upstream = upstream_names[i] if upstream_names else public_id
            priority = RoutePriority.PRIMARY if not model.routes.exists() else RoutePriority.BACKUP
            _route, new_route = Route.objects.get_or_create(
                model=model, provider=provider, upstream_model=upstream, defaults={"priority": priority}
            )
            if new_route and not new:
                created.append(f"route {public_id}→{provider.slug}")

    def _image_models(self, created, provider, models: dict[str, dict[str, str]]) -> None:
        for public_id, prices in models.items():
            model, new = CatalogModel.objects.get_or_create(
                public_id=public_id,
                defaults=dict(
                    kind=ModelKind.IMAGE,
                    owned_by=provider.slug,
                    context_window=0,
                    max_output_tokens=0,
                    image_prices={key: usd_to_nusd(usd) for key, usd in prices.items()},
                ),
            )
            if new:
                created.append(public_id)
            priority = RoutePriority.PRIMARY if not model.routes.exists() else RoutePriority.BACKUP
            Route.objects.get_or_create(
                model=model, provider=provider, upstream_model=public_id, defaults={"priority": priority}
            )
