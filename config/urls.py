from django.contrib import admin
from django.urls import include, path

from config.api import api
from config.health import healthz, readyz

admin.site.site_header = "Tollgate operations"
admin.site.site_title = "Tollgate admin"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("v1/", api.urls),
    path("api/v1/", include("accounts.rest_urls")),
    path("api/v1/", include("webhooks.rest_urls")),
    path("billing/", include("billing.urls")),
    path("", include("dashboard.urls")),
]

handler400 = "config.views.bad_request"
handler500 = "config.views.server_error"
