"""Websocket routes for live dashboard updates."""

from django.urls import re_path

from dashboard.consumers import TeamConsumer

websocket_urlpatterns = [
    re_path(r"^ws/team/(?P<team_public_id>[A-Za-z0-9_]+)/$", TeamConsumer.as_asgi()),
]
