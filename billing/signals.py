"""Signals billing sends after a money change commits; other apps (dashboard live updates,
auto-recharge) listen without billing importing them."""

from django.dispatch import Signal

# kwargs: receipt (billing.models.Receipt), wallet (billing.models.Wallet or None for test receipts).
# Sent from the gateway's event loop too (billing.services.asettle): receivers must not block or query
# there; hand such work to a thread (see billing.receivers, dashboard.live).
receipt_settled = Signal()
# kwargs: wallet (billing.models.Wallet), entry (billing.models.LedgerEntry)
wallet_credited = Signal()
