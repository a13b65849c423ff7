"""Prices per image: the table's rules, the money maths, and the operator's admin form."""

from __future__ import annotations

import pytest

from accounts.models import User
from billing import pricing
from gateway import image_pricing
from gateway.admin import parse_image_prices
from gateway.models import CatalogModel
from gateway.price_book import current_price

TABLE = {"1024x1024": 40_000_000, "1024x1024/hd": 80_000_000, "512x512": 18_000_000}


def price(size=None, quality=None, table=TABLE):
    return image_pricing.price_for(table, model="m", size=size, quality=quality)


def test_a_request_pays_the_price_of_its_size_and_quality():
    assert price().unit_nusd == 40_000_000  # 1024x1024 is the default size when offered
    assert price("512x512").unit_nusd == 18_000_000
    assert price("1024x1024", "hd").unit_nusd == 80_000_000
    assert price("1024x1024", "standard").unit_nusd == 40_000_000
    assert price("512x512", "auto").unit_nusd == 18_000_000


@pytest.mark.parametrize(
    ("size", "quality", "param"),
    [("256x256", None, "size"), ("512x512", "hd", "quality"), ("1024x1024", "ultra", "quality")],
)
def test_what_the_model_does_not_price_is_refused_naming_the_field(size, quality, param):
    with pytest.raises(image_pricing.Unpriced) as refused:
        price(size, quality)
    assert refused.value.param == param


def test_a_model_without_qualities_ignores_the_quality_asked():
    assert price("512x512", "high", table={"512x512": 5}).unit_nusd == 5


def test_named_sizes_a_model_declares_are_offered():
    assert price("auto", table={"auto": 7}).unit_nusd == 7
    assert image_pricing.dimensions("auto") == (1024, 1024)
    assert image_pricing.dimensions("1792x1024") == (1792, 1024)


@pytest.mark.parametrize(
    "table",
    [
        {"huge": -1},
        {"1024x1024": 1.5},
        {"1024x1024": True},
        {"10x": 1},
        {"1024x1024/HD": 1, "1024x1024": 1},
        {"1024x1024/hd": 1},  # a quality needs its size's base price
        {"1024x1024": 10**13},
        ["1024x1024"],
    ],
)
def test_a_bad_price_table_is_refused(table):
    with pytest.raises(image_pricing.PriceTableError):
        image_pricing.parse_table(table)


def test_images_are_output_cost_and_the_hold_covers_n_images():
    prices = pricing.Prices(input_nusd=0, output_nusd=0, image_nusd=40_000_000)
    cost = pricing.cost_of(pricing.Usage(prompt_tokens=0, completion_tokens=0, images=3), prices)
    assert (cost.input_nusd, cost.output_nusd, cost.total_nusd) == (0, 120_000_000, 120_000_000)
    assert (
        pricing.hold_amount(prompt_tokens_estimate=0, max_output_tokens=0, prices=prices, max_images=3)
        == cost.total_nusd
    )
    with pytest.raises(ValueError):
        pricing.cost_of(pricing.Usage(prompt_tokens=0, completion_tokens=0, images=-1), prices)


def test_the_admin_line_format_becomes_an_exact_table():
    assert parse_image_prices("1024x1024 = 0.04\n\n1024x1024/hd = $0.08\n") == {
        "1024x1024": 40_000_000,
        "1024x1024/hd": 80_000_000,
    }
    for bad in ("1024x1024 0.04", "1024x1024 = lots", "1024x1024 = 0.0000000001"):
        with pytest.raises(image_pricing.PriceTableError):
            parse_image_prices(bad)


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser(email="root@tollgate.test", password="x-very-secret-1"))
    return client


def form(**overrides):
    return {
        "public_id": "new-image",
        "kind": "image",
        "owned_by": "tollgate",
        "description": "",
        "context_window": 0,
        "max_output_tokens": 0,
        "enabled": "on",
        "input_per_million": "0",
        "cached_per_million": "0",
        "output_per_million": "0",
        "image_prices_usd": "1024x1024 = 0.04\n1024x1024/hd = 0.08",
        "image_input_tokens": "0",
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
        **overrides,
    }


def test_an_operator_adds_an_image_model_with_prices_per_image(admin_client):
    response = admin_client.post("/admin/gateway/catalogmodel/add/", form())
    assert response.status_code == 302, response.content.decode()[:2000]
    assert current_price(CatalogModel.objects.get(public_id="new-image")).image_prices == {
        "1024x1024": 40_000_000,
        "1024x1024/hd": 80_000_000,
    }
    page = admin_client.get(f"/admin/gateway/catalogmodel/{CatalogModel.objects.get().pk}/change/").content.decode()
    assert "1024x1024/hd = 0.08" in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_prices_usd": ""}, "needs a price for at least one size"),
        ({"image_prices_usd": "big = 0.04x"}, "is not an amount"),
        ({"image_prices_usd": "1024x1024/hd = 0.08"}, "base price"),
        ({"kind": "chat", "context_window": 1000, "max_output_tokens": 100}, "only image models"),
    ],
)
def test_the_admin_refuses_a_bad_price_table(admin_client, overrides, message):
    response = admin_client.post("/admin/gateway/catalogmodel/add/", form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not CatalogModel.objects.exists()


def test_start_up_refuses_a_hold_ttl_shorter_than_an_image_jobs_deadlines(settings):
    from gateway.checks import image_job_hold_outlives_its_deadlines

    assert image_job_hold_outlives_its_deadlines(None) == []
    settings.HOLD_TTL_SECONDS = settings.IMAGE_JOB_TIMEOUT_SECONDS
    (error,) = image_job_hold_outlives_its_deadlines(None)
    assert error.id == "tollgate.E002" and "HOLD_TTL_SECONDS" in error.msg
