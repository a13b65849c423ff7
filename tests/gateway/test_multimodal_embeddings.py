"""POST /v1/embeddings with an input of content parts (text and images): one combined vector, image parts priced
as the model declares, a 400 naming `input` from models that embed text only."""

from __future__ import annotations

import base64
import math

import pytest

from billing.models import Receipt
from gateway.models import CatalogModel
from gateway.price_book import current_price

pytestmark = pytest.mark.django_db

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
GIF = "data:image/gif;base64," + base64.b64encode(b"GIF89a" + b"\x01" * 32).decode()


def embed(v1, parts, model="demo-embed-multimodal", **extra):
    return v1.post("/embeddings", {"model": model, "input": parts, **extra})


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_text_and_images_are_one_vector_and_each_image_is_priced_as_declared(v1):
    parts = [
        {"type": "text", "text": "a red bicycle"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/bike.jpg"}},
    ]
    response = embed(v1, parts)
    assert response.status_code == 200, response.content
    body = response.json()
    (item,) = body["data"]
    assert math.isclose(math.fsum(x * x for x in item["embedding"]), 1.0, rel_tol=1e-9)
    model = CatalogModel.objects.get(public_id="demo-embed-multimodal")
    receipt = Receipt.objects.get(public_id=body["usage"]["receipt_id"])
    text_only = embed(v1, [{"type": "text", "text": "a red bicycle"}]).json()["usage"]["prompt_tokens"]
    assert receipt.prompt_tokens == text_only + 2 * model.image_input_tokens == body["usage"]["prompt_tokens"]
    assert receipt.total_cost_nusd == receipt.prompt_tokens * current_price(model).input_price_nusd


def test_the_same_image_gets_the_same_vector_and_another_image_another(v1):
    def vector(url):
        return embed(v1, [{"type": "image_url", "image_url": {"url": url}}]).json()["data"][0]["embedding"]

    assert vector(PNG) == vector(PNG)
    assert cosine(vector(PNG), vector(GIF)) < 0.5
    with_text = embed(v1, [{"type": "text", "text": "cat"}, {"type": "image_url", "image_url": {"url": PNG}}])
    assert cosine(with_text.json()["data"][0]["embedding"], vector(PNG)) > 0.5  # the image is in the mix


def test_a_text_only_model_answers_400_naming_input(v1):
    response = embed(v1, [{"type": "text", "text": "hi"}], model="demo-embed")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"
    assert "text only" in response.json()["error"]["message"]
    assert not Receipt.objects.exists()


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!"}},
        {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}},
        {"type": "audio", "audio": "x"},
    ],
)
def test_bad_parts_are_refused_naming_input(v1, part):
    response = embed(v1, [part])
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("input")
    assert not Receipt.objects.exists()


def test_auto_picks_a_model_that_embeds_images(v1):
    response = embed(v1, [{"type": "image_url", "image_url": {"url": PNG}}], model="auto")
    assert response.status_code == 200, response.content
    assert response.json()["routing"]["routed_to"] == "demo-embed-multimodal"
