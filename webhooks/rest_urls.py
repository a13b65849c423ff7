"""Webhook endpoints in the management API under /api/v1/."""

from django.urls import path

from webhooks import rest

urlpatterns = [
    path("teams/<str:team_public_id>/webhooks/", rest.TeamWebhooksView.as_view(), name="api-team-webhooks"),
    path("webhooks/<str:endpoint_public_id>/", rest.WebhookDetailView.as_view(), name="api-webhook-detail"),
    path(
        "webhooks/<str:endpoint_public_id>/rotate-secret/", rest.RotateSecretView.as_view(), name="api-webhook-rotate"
    ),
    path("webhooks/<str:endpoint_public_id>/deliveries/", rest.DeliveriesView.as_view(), name="api-webhook-deliveries"),
    path(
        "webhooks/<str:endpoint_public_id>/deliveries/<str:delivery_public_id>/redeliver/",
        rest.RedeliverView.as_view(),
        name="api-webhook-redeliver",
    ),
    path("webhooks/<str:endpoint_public_id>/test/", rest.TestEventView.as_view(), name="api-webhook-test"),
]
