"""The price book: prices change by adding versions with an effective time, never by editing history; requests are
priced by the version in force when their hold was placed, /v1/models shows the next prices, receipts name their
version; the admin adds versions and shows the history read-only."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import User
from billing.models import Hold, Receipt
from billing.pricing import per_million_usd
from gateway import catalog, price_book
from gateway.models import AppendOnly, CatalogModel, PriceVersion, RouteCostVersion
from tests.asgi import V1
from tests.gateway.conftest import chat


def demo_chat() -> CatalogModel:
    return CatalogModel.objects.get(public_id="demo-chat")


def raise_prices(model: CatalogModel, *, input_nusd=900, output_nusd=2_700, **kwargs) -> PriceVersion:
    return price_book.add_price_version(model, price_book.Prices(input_nusd, 0, output_nusd), **kwargs)


@pytest.mark.django_db
def test_a_price_change_is_a_new_version_and_the_old_one_stays_readable(seeded):
    model = demo_chat()
    old = price_book.current_price(model)
    new = raise_prices(model)
    assert new.effective_at >= timezone.now() + timedelta(seconds=price_book.lead_seconds() - 1)
    assert price_book.current_price(model) == old  # not yet in force
    assert price_book.current_price(model, now=new.effective_at) == new
    assert list(model.price_versions.order_by("effective_at")) == [old, new]
    with pytest.raises(AppendOnly):
        old.input_price_nusd = 1
        old.save()
    with pytest.raises(AppendOnly):
        PriceVersion.objects.filter(pk=old.pk).update(input_price_nusd=1)
    with pytest.raises(AppendOnly):
        old.delete()
    assert PriceVersion.objects.get(pk=old.pk).input_price_nusd == 500  # $0.50 per million, as seeded


@pytest.mark.django_db
def test_a_change_cannot_take_effect_before_every_server_has_it(seeded):
    with pytest.raises(price_book.PriceBookError) as exc:
        raise_prices(demo_chat(), effective_at=timezone.now() + timedelta(seconds=1))
    assert exc.value.field == "effective_at" and "history is never rewritten" in exc.value.message
    assert demo_chat().price_versions.count() == 1


@pytest.mark.django_db
def test_bad_prices_are_refused_and_nothing_is_added(seeded):
    with pytest.raises(price_book.PriceBookError):
        price_book.add_price_version(demo_chat(), price_book.Prices(-1, 0, 0))
    with pytest.raises(price_book.PriceBookError):
        price_book.add_price_version(demo_chat(), price_book.Prices(1, 0, 1, {"1024x1024": 5}))  # chat: no images
    assert demo_chat().price_versions.count() == 1


@pytest.mark.django_db
def test_v1_models_shows_the_prices_in_force_and_the_next_ones_with_their_time(v1):
    before = v1.get("/models/demo-chat").json()["pricing"]
    assert before["next"] is None and before["input"] == "0.5" and before["version"].startswith("pv_")
    new = raise_prices(demo_chat())
    pricing = v1.get("/models/demo-chat").json()["pricing"]
    assert (pricing["input"], pricing["output"], pricing["version"]) == ("0.5", "1.5", before["version"])
    assert pricing["next"] == {
        "input": "0.9",
        "cached_input": "0",
        "output": "2.7",
        "version": new.public_id,
        "effective_at": int(new.effective_at.timestamp()),
    }
    listed = next(m for m in v1.get("/models").json()["data"] if m["id"] == "demo-chat")
    assert listed["pricing"]["next"]["version"] == new.public_id
    with time_machine.travel(new.effective_at + timedelta(seconds=1), tick=False):
        now_in_force = v1.get("/models/demo-chat").json()["pricing"]
    assert (now_in_force["input"], now_in_force["version"], now_in_force["next"]) == ("0.9", new.public_id, None)


@pytest.mark.django_db
def test_a_receipt_names_the_version_it_was_priced_at(v1, client, owner):
    new = raise_prices(demo_chat())
    before = Receipt.objects.get(public_id=v1.post("/chat/completions", chat()).json()["usage"]["receipt_id"])
    with time_machine.travel(new.effective_at + timedelta(seconds=1), tick=False):
        after = Receipt.objects.get(public_id=v1.post("/chat/completions", chat()).json()["usage"]["receipt_id"])
    assert before.price_version == price_book.in_force(list(demo_chat().price_versions.all()), timezone.now()).public_id
    assert (before.input_price_nusd, before.output_price_nusd) == (500, 1_500)
    assert (after.price_version, after.input_price_nusd, after.output_price_nusd) == (new.public_id, 900, 2_700)
    assert v1.get(f"/receipts/{after.public_id}").json()["price_version"] == new.public_id
    client.force_login(owner)
    page = client.get(f"/t/{after.team.public_id}/receipts/{after.public_id}/").content.decode()
    assert new.public_id in page and "in force from" in page


@pytest.mark.django_db(transaction=True)
async def test_requests_held_before_a_change_are_priced_at_the_old_version_even_if_they_end_after(live_key, settings):
    """Mid-traffic: slow streams are held at the old prices, the change takes effect while they run, requests held
    after it pay the new prices; each settles at the version of its hold."""
    settings.SIMULATOR_TOKENS_PER_SECOND = 100  # 40 tokens: 0.4 s a stream
    model = await CatalogModel.objects.aget(public_id="demo-chat")
    old = await sync_to_async(price_book.current_price)(model)
    new = await sync_to_async(raise_prices)(model)
    v1 = V1(live_key)
    body = chat(stream=True, max_tokens=40, messages=[{"role": "user", "content": "Tell me a long story."}])
    with time_machine.travel(timezone.now(), tick=True) as clock:
        early = [asyncio.ensure_future(v1.apost("/chat/completions", body)) for _ in range(4)]
        for _ in range(200):  # until all four holds are placed
            if await Hold.objects.acount() == 4:
                break
            await asyncio.sleep(0.01)
        clock.shift(new.effective_at - timezone.now() + timedelta(milliseconds=1))  # the change takes effect now
        late = [asyncio.ensure_future(v1.apost("/chat/completions", body)) for _ in range(3)]
        responses = await asyncio.gather(*early, *late)
    assert all(r.status_code == 200 for r in responses)
    receipts = [await Receipt.objects.aget(request_id=r["X-Request-Id"]) for r in responses]
    assert all(r.created_at >= new.effective_at for r in receipts[:4])  # they ended after the change…
    assert [r.price_version for r in receipts] == [old.public_id] * 4 + [new.public_id] * 3  # …at their hold's
    for receipt in receipts:
        version = old if receipt.price_version == old.public_id else new
        assert receipt.total_cost_nusd == (
            receipt.prompt_tokens * version.input_price_nusd + receipt.completion_tokens * version.output_price_nusd
        )


# --- upstream costs are versioned the same way ------------------------------------------------------------


@pytest.mark.django_db
def test_the_seeded_routes_carry_their_upstreams_prices(seeded):
    route = demo_chat().routes.get()
    cost = price_book.current_cost(route)
    assert (cost.input_price_nusd, cost.cached_price_nusd, cost.output_price_nusd) == (300, 150, 900)
    image = CatalogModel.objects.get(public_id="demo-image").routes.get()
    assert price_book.current_cost(image).image_prices["1024x1024"] == 24_000_000


@pytest.mark.django_db
def test_a_providers_configuration_seeds_its_routes_costs(db):
    from django.core.management import call_command

    from gateway.models import Provider

    Provider.objects.create(
        slug="simulator",
        kind="simulator",
        options={"costs": {"demo-chat": {"input": "0.1", "cached": "0.05", "output": "0.2"}}},
    )
    call_command("seed_catalog", quiet=True)
    cost = price_book.current_cost(demo_chat().routes.get())
    assert (cost.input_price_nusd, cost.cached_price_nusd, cost.output_price_nusd) == (100, 50, 200)
    call_command("seed_catalog", quiet=True)  # idempotent: a route with costs keeps them
    assert RouteCostVersion.objects.filter(route__model__public_id="demo-chat").count() == 1


# --- the admin ----------------------------------------------------------------------------------------------


@pytest.fixture
def operator(client, db):
    client.force_login(User.objects.create_superuser(email="root@tollgate.test", password="x-very-secret-1"))
    return client


FLAGS = ("supports_tools", "supports_vision", "supports_json", "supports_reasoning", "supports_multimodal_input")


def _change_form(model: CatalogModel, **overrides) -> dict:
    latest = price_book.latest_price(model)
    form = {
        "public_id": model.public_id,
        "kind": model.kind,
        "owned_by": model.owned_by,
        "description": model.description,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "image_input_tokens": model.image_input_tokens,
        "enabled": "on",
        **{flag: "on" for flag in FLAGS if getattr(model, flag)},
        "input_per_million": str(per_million_usd(latest.input_price_nusd)),
        "cached_per_million": str(per_million_usd(latest.cached_price_nusd)),
        "output_per_million": str(per_million_usd(latest.output_price_nusd)),
        "image_prices_usd": "",
        "effective_at": "",
        "price_note": "",
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
        "price_versions-TOTAL_FORMS": "0",
        "price_versions-INITIAL_FORMS": "0",
    }
    form.update(overrides)
    return form


def test_changing_a_price_in_the_admin_adds_a_version_and_keeps_the_history(operator, seeded):
    model = demo_chat()
    first = price_book.latest_price(model)
    url = f"/admin/gateway/catalogmodel/{model.pk}/change/"
    unchanged = operator.post(url, _change_form(model, description="same prices"))
    assert unchanged.status_code == 302 and model.price_versions.count() == 1  # other fields only: no version
    response = operator.post(url, _change_form(model, input_per_million="0.75", price_note="supplier raised"))
    assert response.status_code == 302, response.content.decode()[:3000]
    latest = price_book.latest_price(model)
    assert latest != first and latest.input_price_nusd == 750 and latest.note == "supplier raised"
    assert PriceVersion.objects.get(pk=first.pk).input_price_nusd == 500  # the old one stays as it was
    page = operator.get(url).content.decode()
    assert first.public_id in page and latest.public_id in page and "price history" in page.lower()
    assert "price_versions-0-input_price_nusd" not in page  # history is shown, not editable
    from accounts.models import AuditLog

    assert AuditLog.objects.filter(action="price.version_added", target="demo-chat").exists()


def test_the_admin_refuses_an_effective_time_in_the_past(operator, seeded):
    model = demo_chat()
    response = operator.post(
        f"/admin/gateway/catalogmodel/{model.pk}/change/",
        _change_form(model, input_per_million="0.75", effective_at="2020-01-01T00:00"),
    )
    assert response.status_code == 200 and "history is never rewritten" in response.content.decode()
    assert model.price_versions.count() == 1


def test_an_operator_enters_a_routes_upstream_cost_on_its_page(operator, seeded):
    route = demo_chat().routes.get()
    url = f"/admin/gateway/route/{route.pk}/change/"
    page = operator.get(url)
    assert page.status_code == 200 and "upstream cost history" in page.content.decode().lower()
    response = operator.post(
        url,
        {
            "model": route.model_id,
            "provider": route.provider_id,
            "upstream_model": route.upstream_model,
            "priority": route.priority,
            "order": route.order,
            "weight": route.weight,
            "enabled": "on",
            "input_per_million": "0.2",
            "cached_per_million": "0.1",
            "output_per_million": "0.6",
            "image_prices_usd": "",
            "effective_at": (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
            "cost_versions-TOTAL_FORMS": "0",
            "cost_versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert route.cost_versions.count() == 2
    assert price_book.current_cost(route).input_price_nusd == 300  # tomorrow's is scheduled
    assert price_book.latest_cost(route).input_price_nusd == 200
    catalog.invalidate()
    snap_route = catalog.snapshot().models["demo-chat"].routes[0]
    assert snap_route.cost_at(timezone.now() + timedelta(days=2)).prices.output_nusd == 600


def test_the_price_version_list_is_read_only(operator, seeded):
    version = price_book.latest_price(demo_chat())
    assert operator.get("/admin/gateway/priceversion/").status_code == 200
    assert operator.get("/admin/gateway/priceversion/add/").status_code == 403
    page = operator.get(f"/admin/gateway/priceversion/{version.pk}/change/").content.decode()
    assert 'name="input_price_nusd"' not in page and version.public_id in page
    assert orjson.dumps(version.image_prices)  # readable as stored


@pytest.mark.django_db
def test_the_models_page_shows_a_scheduled_change_with_its_date(client, owner, team, seeded):
    new = raise_prices(demo_chat())
    client.force_login(owner)
    page = client.get(f"/t/{team.public_id}/models/").content.decode()
    assert 'data-next-for="demo-chat"' in page and "$0.90" in page and "$2.70" in page
    assert new.effective_at.strftime("%b %-d, %Y") in page
