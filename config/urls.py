from django.contrib import admin
from django.urls import include, path

from config.api import api
from config.health import healthz, readyz
from gateway.views import image_file

admin.site.site_header = "Tollgate operations"
admin.site.site_title = "Tollgate admin"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("v1/files/images/<str:name>", image_file, name="image_file"),  # anonymous: signed links
    path("v1/", api.urls),
    path("api/v1/", include("accounts.rest_urls")),
    path("billing/", include("billing.urls")),
    path("", include("dashboard.urls")),
]
