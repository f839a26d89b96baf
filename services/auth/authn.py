"""Turning the ``authorization`` a call carries into a principal: the one check gRPC servers and the gateway
share."""

from __future__ import annotations

import hmac
import ipaddress
import socket

import grpc

from services.auth.policy import OPEN, SERVICE, Principal
from services.auth.store import KeyStore
from services.common.errors import DomainError


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Authenticator:
    """Resolves ``Bearer <key>`` against the keys store, or the service's ``api_token`` (a service credential
    with the admin role). Off (everyone is ``OPEN``, the local admin) while the store has no key and no
    ``api_token`` is set."""

    def __init__(self, store: KeyStore | None, api_token: str | None = None) -> None:
        self.store = store
        self._token = f"Bearer {api_token}".encode() if api_token else None

    def enabled(self) -> bool:
        return self._token is not None or (self.store is not None and self.store.has_keys())

    def maybe_enabled(self) -> bool:
        """A cheap test (no database read): False only when auth is certainly off."""
        return self._token is not None or (self.store is not None and self.store.exists)

    def authenticate(self, header: str | bytes | None) -> Principal:
        """The caller's principal; ``Unauthenticated`` (saying what to send) without a valid key."""
        if not self.enabled():
            return OPEN
        if header is None:
            raise Unauthenticated("missing API token: send 'authorization: Bearer <key>'")
        raw = header if isinstance(header, bytes) else str(header).encode()
        if self._token is not None and hmac.compare_digest(raw, self._token):
            return SERVICE
        principal = None
        if self.store is not None and raw.startswith(b"Bearer "):
            try:
                principal = self.store.resolve(raw[len(b"Bearer "):].decode())
            except UnicodeDecodeError:
                principal = None
        if principal is None:
            raise Unauthenticated("invalid API token: send 'authorization: Bearer <key>' with an active key")
        return principal


def is_loopback(host: str) -> bool:
    host = (host or "").strip().strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def check_exposure(service: str, host: str, auth: Authenticator) -> None:
    """Refuses to serve a non-loopback address with auth off: a clear message naming the settings."""
    if is_loopback(host) or auth.enabled():
        return
    prefix = service.upper()
    raise SystemExit(
        f"{service}: refusing to listen on {host!r} without API keys: anyone who can reach it would control "
        f"everything. Create a key (python -m services.auth keys create --name admin --role admin) in the keys "
        f"store {prefix}_AUTH_DATABASE_URL points to, or set {prefix}_API_TOKEN, or bind {prefix}_HOST=127.0.0.1.")
