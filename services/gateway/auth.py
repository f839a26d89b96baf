"""The gateway's side of users and roles (``services.auth``): who calls, what reaches the backends, and the one
place that decides which routes a role may use.

- ``AuthMiddleware`` (pure ASGI, so streams pass untouched): every ``/api/`` and ``/v1/`` request is resolved to
  a principal from ``Authorization: Bearer <key>`` (the keys store, or ``GATEWAY_API_TOKEN``); 401 in the usual
  error body without a valid one. The dashboard pages, /healthz and the OpenAPI docs stay open.
- The caller's ``authorization`` travels to the exporter and the trainer as gRPC metadata (``forward``), so
  the backends apply the same rules to the same principal: its role per RPC, its own jobs only.
- ``authorize`` (one dependency of the whole app) refuses a route the role may not use before it runs; the
  gateway's own routes (``/api/admin/...``) are decided here, every other route by the backend RPCs it calls.
"""

from __future__ import annotations

import asyncio
import contextvars

from fastapi import Request
from fastapi.exceptions import HTTPException

from services.auth import policy
from services.auth.authn import Authenticator, Unauthenticated
from services.common.grpc_server import authorization_interceptors
from services.gateway import errors

_forwarded: contextvars.ContextVar[str | None] = contextvars.ContextVar("forwarded_authorization", default=None)

PROTECTED = ("/api/", "/v1/")


def protected(path: str) -> bool:
    return path == "/api" or path.startswith(PROTECTED)


class AuthMiddleware:
    def __init__(self, app, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not protected(scope.get("path", "")) or not self.auth.maybe_enabled():
            await self.app(scope, receive, send)
            return
        got = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        try:
            principal = await asyncio.to_thread(self.auth.authenticate, got)
        except Unauthenticated as exc:
            reason = exc.message.split(":", 1)[0]
            response = errors.response(
                401, f"{reason}: send the header 'Authorization: Bearer <key>'", "UNAUTHENTICATED",
                [{"field": "Authorization", "reason": reason}], headers={"WWW-Authenticate": 'Bearer realm="api"'})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        token = policy.set_current(principal)
        forwarded = _forwarded.set(got.decode("latin-1") if got is not None else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _forwarded.reset(forwarded)
            policy.reset_current(token)


def principal_of(request: Request) -> policy.Principal:
    return request.scope.get("state", {}).get("principal", policy.OPEN)


def route_role(method: str, path: str) -> str | None:
    """The least role a route needs at the gateway: admin for ``/api/admin/``, user for anything but a read
    (GET, HEAD: a viewer is read-only) under ``/api/`` and ``/v1/``; None for the open pages. The backends
    then decide per RPC (and per job: a user's own only)."""
    if not protected(path):
        return None
    if path == "/api/admin" or path.startswith("/api/admin/"):
        return policy.ADMIN
    if method not in ("GET", "HEAD"):
        return policy.USER
    return policy.VIEWER


async def authorize(request: Request) -> None:
    """The app's one access dependency: 403 for a route above the caller's role, before the route runs."""
    role = route_role(request.method, request.url.path)
    if role is None:
        return
    principal = principal_of(request)
    if not principal.at_least(role):
        raise HTTPException(403, f"this needs the {role} role; this key's role is {principal.role}")


# -- forwarding to the backends ----------------------------------------------------------------------------------


def forward(api_token: str | None) -> list:
    """Client interceptors for the backends' channels: every call carries the caller's ``authorization`` (else
    the gateway's own ``api_token``)."""
    fallback = f"Bearer {api_token}" if api_token else None
    return authorization_interceptors(lambda: _forwarded.get() or fallback)
