from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from billing.rest import RedeemCreditCodeView
from config.api import api
from config.health import healthz, readyz
from config.metrics import metrics_view
from gateway.views import image_file

admin.site.site_header = f"{settings.SITE_NAME} operations"
admin.site.site_title = f"{settings.SITE_NAME} admin"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("v1/files/images/<str:name>", image_file, name="image_file"),  # anonymous: signed links
    path("v1/", api.urls),
    path("api/v1/", include("accounts.rest_urls")),
    path("api/v1/", include("webhooks.rest_urls")),
    path(
        "api/v1/teams/<str:team_public_id>/credit-codes/redeem/",
        RedeemCreditCodeView.as_view(),
        name="api-credit-code-redeem",
    ),
    path("billing/", include("billing.urls")),
    path("", include("dashboard.urls")),
]

handler400 = "config.views.bad_request"
handler500 = "config.views.server_error"
