"""DRF authentication by API key (the `keys:write` scope). Filled in by the API-keys work."""

from rest_framework.authentication import BaseAuthentication


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        return None
