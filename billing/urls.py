from django.urls import path

from billing import views, webhooks

app_name = "billing"

urlpatterns = [
    path("stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
    path("topup/success/", views.topup_success, name="topup_success"),
    path("topup/cancel/", views.topup_cancel, name="topup_cancel"),
    path("teams/<str:team_public_id>/topup/", views.topup_start, name="topup_start"),
]
