"""Key management and the audit log for admins (``/api/admin/...``), and who the caller is (``/api/auth/me``).

The keys store is the one the three services share (``GATEWAY_AUTH_DATABASE_URL``); the same operations exist
as ``python -m services.auth keys ...``. A new key is in the answer to its creation, and never again.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from services.auth.store import NAME_MAX, KeyStore
from services.gateway.auth import principal_of

router = APIRouter(tags=["admin"])


class Me(BaseModel):
    name: str
    """The key's name ("local" with no keys configured: the open default)."""
    role: str
    """admin, user or viewer."""
    auth: bool
    """Whether keys are required (false: the open default on loopback)."""


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    kind: str
    created_at: str
    created_by: str
    revoked_at: str | None
    active: bool


class KeyCreated(KeyOut):
    key: str
    """The API key itself: shown in this answer only (only its hash is stored)."""


class KeyList(BaseModel):
    keys: list[KeyOut]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    """Whose key: a person's or a service account's name (the owner of the jobs it creates)."""
    role: Literal["admin", "user", "viewer"] = "user"
    kind: Literal["user", "service"] = "user"


class AuditOut(BaseModel):
    id: int
    time: str
    actor: str
    role: str
    action: str
    target: str
    detail: str


class AuditList(BaseModel):
    entries: list[AuditOut]
    total: int


def _store(request: Request) -> KeyStore:
    return request.app.state.auth.store


@router.get("/api/auth/me", response_model=Me)
async def read_me(request: Request):
    """Who the caller is, and whether keys are required."""
    principal = principal_of(request)
    enabled = await asyncio.to_thread(request.app.state.auth.enabled)
    return Me(name=principal.name, role=principal.role, auth=enabled)


@router.get("/api/admin/keys", response_model=KeyList)
async def list_keys(request: Request):
    """Every key (revoked ones included), never their secrets."""
    keys = await asyncio.to_thread(_store(request).list)
    return {"keys": [k.to_dict() for k in keys]}


@router.post("/api/admin/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: NewKey, request: Request):
    """A new key for a person or a service account; the key is in this answer only."""
    store, principal = _store(request), principal_of(request)
    info, key = await asyncio.to_thread(store.create, body.name, body.role, body.kind, principal.name)
    await asyncio.to_thread(store.audit, principal, "key.create", info.id, f"{info.name} ({info.role})")
    return {**info.to_dict(), "key": key}


@router.delete("/api/admin/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, request: Request):
    """Revokes a key at once (calls with it get 401 from then on)."""
    store, principal = _store(request), principal_of(request)
    info = await asyncio.to_thread(store.revoke, key_id)
    await asyncio.to_thread(store.audit, principal, "key.revoke", info.id, f"{info.name} ({info.role})")
    return info.to_dict()


@router.get("/api/admin/audit", response_model=AuditList)
async def read_audit(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     offset: Annotated[int, Query(ge=0)] = 0):
    """Who created, started, cancelled, deployed and downloaded what, and who changed keys: newest first."""
    entries, total = await asyncio.to_thread(_store(request).audit_log, limit, offset)
    return {"entries": [e.to_dict() for e in entries], "total": total}
