"""Management API (Django REST framework) under /api/v1/."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from accounts import rest

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("teams/<str:team_public_id>/keys/", rest.TeamKeysView.as_view(), name="api-team-keys"),
    path("keys/<str:key_public_id>/", rest.KeyDetailView.as_view(), name="api-key-detail"),
    path("keys/<str:key_public_id>/rotate/", rest.KeyRotateView.as_view(), name="api-key-rotate"),
    path("keys/<str:key_public_id>/revoke/", rest.KeyRevokeView.as_view(), name="api-key-revoke"),
    path("teams/<str:team_public_id>/projects/", rest.TeamProjectsView.as_view(), name="api-team-projects"),
    path("projects/<str:project_public_id>/", rest.ProjectDetailView.as_view(), name="api-project-detail"),
]
