"""Websocket routes for live dashboard updates."""

websocket_urlpatterns: list = []
