"""DRF authentication by API key: a key holding `keys:write` may use the key-management API (webhooks
subclasses this with `webhooks:write`).

Without a key header this authenticator steps aside (returns None) so session login can apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts.auth import KeyContext, authenticate, extract_key
from accounts.models import Scope
from config.errors import ApiError
from config.net import client_ip_from_request


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """`request.user` for a request authenticated by API key; `request.auth` is the KeyContext."""

    ctx: KeyContext
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_superuser: bool = False
    is_active: bool = True
    pk: None = None

    def __str__(self) -> str:
        return f"api key {self.ctx.masked}"


class _Refused(exceptions.APIException):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status_code = status
        super().__init__(detail=message, code=code)


class ApiKeyAuthentication(BaseAuthentication):
    scope: str = Scope.KEYS_WRITE  # the scope a key needs for the views using this class (webhooks: its own)

    def authenticate(self, request):
        raw = extract_key(request.headers)
        if raw is None:
            return None
        try:
            ctx = authenticate(raw, client_ip=client_ip_from_request(request), scope=self.scope)
        except ApiError as exc:
            raise _Refused(exc.status, exc.code, exc.message)
        return ApiKeyPrincipal(ctx), ctx

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="tollgate"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key with the keys:write scope."}
