"""Test-only: run localstripe (GPL, dev extra) on 127.0.0.1 in a thread, plus the Checkout Sessions it lacks.

The extension adds POST /v1/checkout/sessions (mode payment, one `price_data` line item), GET
/v1/checkout/sessions/{id}, and POST /v1/checkout/sessions/{id}/_test_pay standing in for the buyer:
it confirms a real localstripe PaymentIntent on a test card (attaching the card to the customer when
`setup_future_usage` is set) and emits `checkout.session.completed`, which localstripe signs and
delivers to the webhooks registered with POST /_config/webhooks/<id>. Never shipped with the app.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiohttp import web
from localstripe import resources
from localstripe import server as ls
from localstripe import webhooks as ls_webhooks
from localstripe.errors import UserError

from tests.live_server import loopback_socket

# No pickle of every object to /tmp after each write: this store lives and dies with the test session.
resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]

_sessions: dict[str, dict] = {}


class _Exported:
    """localstripe's Event wants an object with `_export()`."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def _export(self, expand=None) -> dict:
        return dict(self._data)


def _session_or_404(session_id: str) -> dict:
    if session_id not in _sessions:
        raise UserError(404, "No such checkout.session")
    return _sessions[session_id]


async def create_session(request: web.Request) -> web.Response:
    data = await ls.get_post_data(request) or {}
    try:
        assert data.get("mode") == "payment"
        (item,) = data["line_items"]
        price = item["price_data"]
        amount = int(price["unit_amount"]) * int(item.get("quantity", 1))
        assert amount > 0 and price["currency"]
        assert data["success_url"].startswith("http") and data["cancel_url"].startswith("http")
    except (AssertionError, KeyError, ValueError, TypeError):
        raise UserError(400, "Bad request")
    customer = data.get("customer")
    if customer:
        resources.Customer._api_retrieve(customer)  # 404 for an unknown customer, as Stripe does
    session_id = "cs_test_" + resources.random_id(24)
    pi_data = data.get("payment_intent_data") or {}
    base = f"{request.scheme}://{request.host}"
    _sessions[session_id] = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": amount,
        "amount_subtotal": amount,
        "currency": price["currency"],
        "customer": customer,
        "payment_intent": None,
        "client_reference_id": data.get("client_reference_id"),
        "metadata": data.get("metadata") or {},
        "success_url": data["success_url"],
        "cancel_url": data["cancel_url"],
        "livemode": False,
        "url": f"{base}/v1/checkout/sessions/{session_id}/_test_pay",
        "_setup_future_usage": pi_data.get("setup_future_usage"),
        "_pi_metadata": pi_data.get("metadata") or {},
    }
    return ls.json_response(_public(_sessions[session_id]))


def _public(session: dict) -> dict:
    return {k: v for k, v in session.items() if not k.startswith("_")}


async def retrieve_session(request: web.Request) -> web.Response:
    return ls.json_response(_public(_session_or_404(request.match_info["id"])))


async def pay_session(request: web.Request) -> web.Response:
    """The buyer pays with `card` (a test card number): a real PaymentIntent is created and confirmed."""
    session = _session_or_404(request.match_info["id"])
    if session["status"] != "open":
        raise UserError(400, "Session is not open")
    data = await ls.get_post_data(request) or {}
    card = {"number": data.get("card", "4242424242424242"), "exp_month": "12", "exp_year": "2034", "cvc": "123"}
    pm = resources.PaymentMethod(type="card", card=card)
    customer = session["customer"]
    if customer and session["_setup_future_usage"]:
        resources.PaymentMethod._api_attach(pm.id, customer=customer)
    intent = resources.PaymentIntent._api_create(
        confirm=True,
        amount=session["amount_total"],
        currency=session["currency"],
        customer=customer,
        payment_method=pm.id,
        metadata=dict(session["_pi_metadata"]),
    )  # raises a 402 UserError on a decline
    session.update(status="complete", payment_status="paid", payment_intent=intent.id)
    resources.schedule_webhook(resources.Event("checkout.session.completed", _Exported(_public(session))))
    return ls.json_response(_public(session))


ls.app.router.add_post("/v1/checkout/sessions", create_session)
ls.app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
ls.app.router.add_post("/v1/checkout/sessions/{id}/_test_pay", pay_session)


@dataclass
class LocalStripe:
    url: str
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner

    def forget_webhooks(self) -> None:
        """Unregister every webhook URL: events still waiting for their delivery second go nowhere."""
        self.loop.call_soon_threadsafe(ls_webhooks._webhooks.clear)

    def deliveries_pending(self) -> bool:
        async def pending() -> bool:
            return any(
                t.get_coro().__name__ == "_send_webhook" and not t.done()  # type: ignore[union-attr]
                for t in asyncio.all_tasks()
            )

        return asyncio.run_coroutine_threadsafe(pending(), self.loop).result(timeout=5)

    def stop(self) -> None:
        global running
        running = None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def start() -> LocalStripe:
    """localstripe on 127.0.0.1 and a free port, served from a daemon thread with its own event loop."""
    sock = loopback_socket()
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(ls.app, access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="localstripe", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("localstripe did not start")
    global running
    running = LocalStripe(url=f"http://127.0.0.1:{port}", thread=thread, loop=loop, runner=runner)
    return running


# The one instance this process runs (localstripe's app is a module global bound to its first event loop:
# it cannot be served twice, not even after a stop), shared by every test package that needs it.
running: LocalStripe | None = None


def shared() -> LocalStripe:
    """The process's localstripe, started on first use; it lives (a daemon thread) until the process ends."""
    return running if running is not None else start()
