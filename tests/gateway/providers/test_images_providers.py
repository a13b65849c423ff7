"""images() of the providers: the simulator's PNGs and content policy, and an OpenAI-compatible upstream's
images endpoint (b64_json decoded, `url` results downloaded so outputs never depend on upstream's links)."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from gateway.providers import ProviderConfig, get_provider
from gateway.providers.base import ModerationRejected, ProviderError
from gateway.providers.simulator import render_png
from tests.live_server import loopback_socket

PNG = render_png("fixture", 64, 32)


def openai(upstream):
    return get_provider(
        ProviderConfig(kind="openai", name="fake", base_url=upstream.base_url, api_key="sk-up", timeout_seconds=5)
    )


def simulator(**options):
    return get_provider(ProviderConfig(kind="simulator", name="simulator", options=options))


@pytest.fixture
def image_host():
    """A plain HTTP server on 127.0.0.1 serving /cat.png (an image) and /page.html (not one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body, kind = (PNG, "image/png") if self.path == "/cat.png" else (b"<html></html>", "text/html")
            self.send_response(200 if self.path in ("/cat.png", "/page.html") else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    sock = loopback_socket()
    server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket = sock
    server.server_activate()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.shutdown()
    server.server_close()


async def test_the_simulator_draws_a_png_of_each_requested_size():
    result = await simulator().images({"prompt": "a boat", "n": 3, "size": "1792x1024"}, upstream_model="x")
    assert len(result.images) == 3
    sizes = {Image.open(io.BytesIO(i.data)).size for i in result.images}
    assert sizes == {(1792, 1024)}
    assert len({i.data for i in result.images}) == 3  # each of the n is its own picture


async def test_the_simulator_refuses_prompts_with_a_blocked_word_whole_words_only():
    sim = simulator(blocked_words=["castle"])
    with pytest.raises(ModerationRejected) as refused:
        await sim.images({"prompt": "A CASTLE by the sea"}, upstream_model="x")
    assert refused.value.retryable is False and "castle" in refused.value.message
    assert (await sim.images({"prompt": "castles and sandcastles"}, upstream_model="x")).images


async def test_the_simulators_latency_is_configurable():
    import time

    started = time.monotonic()
    await simulator(image_latency_ms=300).images({"prompt": "x", "size": "256x256"}, upstream_model="x")
    assert time.monotonic() - started >= 0.3


async def test_b64_json_results_are_decoded_and_the_body_goes_to_the_images_endpoint(upstream):
    upstream.script(
        "/v1/images/generations",
        {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode(), "revised_prompt": "a cat, sitting"}]},
    )
    result = await openai(upstream).images({"prompt": "a cat", "n": 1, "size": "1024x1024"}, upstream_model="gpt-img")
    (seen,) = upstream.requests
    assert seen.body == {"prompt": "a cat", "n": 1, "size": "1024x1024", "model": "gpt-img"}
    assert seen.headers["Authorization"] == "Bearer sk-up"
    assert result.images[0].data == PNG and result.images[0].revised_prompt == "a cat, sitting"


async def test_url_results_are_downloaded(upstream, image_host):
    upstream.script("/v1/images/generations", {"created": 1, "data": [{"url": f"{image_host}/cat.png"}]})
    result = await openai(upstream).images({"prompt": "a cat"}, upstream_model="m")
    assert result.images[0].data == PNG and result.images[0].content_type == "image/png"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ([{"url": "/page.html"}], "malformed"),  # made absolute below
        ([{"url": "/missing.png"}], "http"),
        ([{"url": "file:///etc/passwd"}], "malformed"),
        ([{"b64_json": "not base64!"}], "malformed"),
        ([{"neither": True}], "malformed"),
        ([], "malformed"),
    ],
)
async def test_unusable_results_are_provider_errors_that_can_fall_back(upstream, image_host, data, kind):
    data = [{"url": image_host + d["url"]} if d.get("url", "").startswith("/") else d for d in data]
    upstream.script("/v1/images/generations", {"created": 1, "data": data})
    with pytest.raises(ProviderError) as failed:
        await openai(upstream).images({"prompt": "x"}, upstream_model="m")
    assert failed.value.kind == kind and failed.value.retryable


async def test_an_upstream_content_policy_refusal_is_moderation_rejected(upstream):
    upstream.script(
        "/v1/images/generations",
        {"error": {"message": "Your request was rejected by the safety system.", "code": "content_policy_violation"}},
        status=400,
    )
    with pytest.raises(ModerationRejected):
        await openai(upstream).images({"prompt": "x"}, upstream_model="m")


async def test_an_upstream_5xx_is_retryable(upstream):
    upstream.script("/v1/images/generations", {"error": {"message": "boom"}}, status=503)
    with pytest.raises(ProviderError) as failed:
        await openai(upstream).images({"prompt": "x"}, upstream_model="m")
    assert failed.value.retryable and not isinstance(failed.value, ModerationRejected)


# --- through the gateway: routing with fallbacks, outputs kept by Tollgate ------------------------------------


@pytest.fixture
def upstream_image_model(upstream, seeded):
    from gateway import catalog
    from gateway.models import Provider, Route
    from gateway.price_book import create_model

    remote = Provider.objects.create(slug="remote", kind="openai", base_url=upstream.base_url, timeout_seconds=5)
    model = create_model("remote-image", kind="image", image_prices={"1024x1024": 30_000_000, "64x32": 1_000_000})
    Route.objects.create(model=model, provider=remote, upstream_model="gpt-image-1", priority="primary")
    Route.objects.create(
        model=model, provider=Provider.objects.get(slug="simulator"), upstream_model="sim", priority="backup"
    )
    catalog.invalidate()
    return model.public_id


def test_a_job_keeps_its_own_copy_of_an_upstream_url_result(
    v1, upstream, image_host, upstream_image_model, django_capture_on_commit_callbacks
):
    from tests.asgi import V1

    upstream.script("/v1/images/generations", {"created": 1, "data": [{"url": f"{image_host}/cat.png"}]})
    with django_capture_on_commit_callbacks(execute=True):
        job_id = v1.post("/images", {"model": upstream_image_model, "prompt": "x", "size": "64x32"}).json()["id"]
    job = v1.get(f"/images/{job_id}").json()
    assert job["status"] == "succeeded"
    (url,) = job["output_urls"]
    assert "/v1/files/images/" in url and image_host not in url
    served = V1(None).get(url.split("/v1", 1)[1])
    assert served.content == PNG
    from gateway.models import ImageJob

    assert ImageJob.objects.get().provider == "remote"


def test_a_failing_primary_falls_back_to_the_backup_route(v1, upstream, upstream_image_model):
    upstream.script("/v1/images/generations", {"error": {"message": "down"}}, status=503, times=None)
    response = v1.post(
        "/images/generations", {"model": upstream_image_model, "prompt": "x", "response_format": "b64_json"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["routing"] == {"routed_to": upstream_image_model, "provider": "simulator", "attempts": 3}
    assert response.json()["usage"]["total_cost_usd"] == 0.03
