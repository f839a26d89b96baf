"""The keys store: API keys (hashed) and the audit log, in one database every service shares.

A key reads ``agk_<id>_<secret>``: ``id`` (12 hex digits) finds the row, ``secret`` (32 random bytes,
URL-safe base64) is what proves it. Only ``sha256(id:secret)`` is stored. A slow password hash (argon2,
bcrypt) protects low-entropy secrets people choose; these secrets are 256 random bits, beyond any guessing, so a
fast hash is the standard practice for API keys (GitHub, Stripe) and keeps every call cheap. The comparison is
constant-time (``hmac.compare_digest``). The key itself is shown once, when it is created.

The services never create the store: while its SQLite file does not exist, there are no keys (the open
default). ``python -m services.auth keys create`` creates it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, Text, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from services.auth.policy import ROLES, Principal
from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound

PREFIX = "agk"
DEFAULT_URL = "sqlite:///var/auth/keys.db"
NAME_MAX = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


class _UTC(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    pass


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), index=True)
    """Who holds it: a person's or a service account's name; the owner recorded on the jobs it creates."""
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="user")
    """``user`` (a person) or ``service`` (a service account)."""
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(_UTC, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(_UTC, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(NAME_MAX))
    role: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(500), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed (never its secret)."""

    id: str
    name: str
    role: str
    kind: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "kind": self.kind,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "active": self.revoked_at is None}


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: datetime
    actor: str
    role: str
    action: str
    target: str
    detail: str

    def to_dict(self) -> dict:
        return {"id": self.id, "time": self.time.isoformat(), "actor": self.actor, "role": self.role,
                "action": self.action, "target": self.target, "detail": self.detail}


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.role, row.kind, row.created_at, row.created_by, row.revoked_at)


def hash_secret(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else None."""
    prefix, sep, rest = key.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not sep2 or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


def check_new_key(name: str, role: str) -> tuple[str, str]:
    name = (name or "").strip()
    violations = []
    if not name or len(name) > NAME_MAX or not name.isprintable():
        violations.append(("name", f"must be 1 to {NAME_MAX} printable characters"))
    if role not in ROLES:
        violations.append(("role", f"must be one of {', '.join(ROLES)}"))
    if violations:
        from services.common.errors import FieldViolation

        raise InvalidArgument([FieldViolation(f, r) for f, r in violations])
    return name, role


class KeyStore:
    """The keys and the audit log at ``url``. ``create=False`` (the services): nothing is created while a
    SQLite file is missing; every read then sees no keys."""

    def __init__(self, url: str = DEFAULT_URL, create: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self._file: Path | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._file = Path(parsed.database).expanduser()
        self._db: Database | None = None
        self._lock = threading.Lock()
        self._has_keys = False
        if create:
            self._open(create=True)

    def _open(self, create: bool = False) -> Database | None:
        with self._lock:
            if self._db is None:
                if not create and self._file is not None and not self._file.exists():
                    return None
                db = Database(self.url)
                Base.metadata.create_all(db.engine)
                self._db = db
            return self._db

    @property
    def exists(self) -> bool:
        return self._db is not None or self._file is None or self._file.exists()

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()

    # -- keys ---------------------------------------------------------------------------------------------

    def has_keys(self) -> bool:
        """Whether any key was ever created (a revoked one counts: revoking every key never reopens)."""
        if self._has_keys:
            return True
        db = self._open()
        if db is None:
            return False
        with db.session() as s:
            self._has_keys = s.scalar(select(ApiKeyRow.id).limit(1)) is not None
        return self._has_keys

    def create(self, name: str, role: str, kind: str = "user", created_by: str = "") -> tuple[KeyInfo, str]:
        """A new key: ``(its info, the key itself)``; the key is not stored and cannot be shown again."""
        name, role = check_new_key(name, role)
        db = self._open(create=True)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with db.session("key") as s:
            row = ApiKeyRow(id=key_id, name=name, role=role, kind=kind, secret_hash=hash_secret(key_id, secret),
                            created_at=utcnow(), created_by=created_by)
            s.add(row)
            s.flush()
            info = _info(row)
        self._has_keys = True
        return info, f"{PREFIX}_{key_id}_{secret}"

    def list(self, include_revoked: bool = True) -> list[KeyInfo]:
        db = self._open()
        if db is None:
            return []
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with db.session() as s:
            return [_info(r) for r in s.scalars(query)]

    def revoke(self, key_id: str) -> KeyInfo:
        """Revokes a key (idempotent); ``NotFound`` for an unknown id."""
        db = self._open()
        if db is None:
            raise NotFound(f"key {key_id!r} not found")
        with db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"key {key_id!r} not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            s.flush()
            return _info(row)

    def service_key(self, name: str, role: str) -> str:
        """A fresh key for a service account ``name`` (its earlier active keys revoked): what a service gives
        the processes it starts (the trainer's workers) when keys are on."""
        db = self._open(create=True)
        with db.session() as s:
            for row in s.scalars(select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.kind == "service",
                                                         ApiKeyRow.revoked_at.is_(None))):
                row.revoked_at = utcnow()
        return self.create(name, role, kind="service", created_by=name)[1]

    def resolve(self, key: str) -> Principal | None:
        """The principal of an active key; None for anything else (malformed, unknown, revoked, wrong secret).
        The secret's hash is compared in constant time."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        db = self._open()
        if db is None:
            return None
        with db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                hmac.compare_digest(hash_secret(key_id, secret), "0" * 64)  # the same work as a known id
                return None
            ok = hmac.compare_digest(hash_secret(key_id, secret), row.secret_hash)
            if not ok or row.revoked_at is not None:
                return None
            return Principal(row.name, row.role, row.id)

    # -- audit --------------------------------------------------------------------------------------------

    def audit(self, actor: Principal, action: str, target: str = "", detail: str = "") -> None:
        """Appends an entry (only once the store exists: the open default keeps no log)."""
        db = self._open()
        if db is None:
            return
        with db.session() as s:
            s.add(AuditRow(time=utcnow(), actor=actor.name, role=actor.role, action=action, target=target[:500],
                           detail=detail))

    def audit_log(self, limit: int = 100, offset: int = 0) -> tuple[list[AuditEntry], int]:
        """Entries newest first, and how many there are."""
        db = self._open()
        if db is None:
            return [], 0
        with db.session() as s:
            rows = s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).offset(max(0, offset))
                             .limit(max(1, limit)))
            entries = [AuditEntry(r.id, r.time, r.actor, r.role, r.action, r.target, r.detail) for r in rows]
            return entries, int(s.scalar(select(func.count()).select_from(AuditRow)) or 0)


_SERVICE_KEYS: dict[tuple[str, str], str] = {}
_SERVICE_LOCK = threading.Lock()


def service_credential(url: str, name: str, role: str = "viewer") -> str | None:
    """The key a service gives the processes it starts (the trainer's workers reading exports) when the store
    at ``url`` holds keys: one service account ``name`` per process, minted once (its earlier keys revoked);
    None while auth is off."""
    with _SERVICE_LOCK:
        if (url, name) not in _SERVICE_KEYS:
            store = KeyStore(url)
            try:
                if not store.has_keys():
                    return None
                _SERVICE_KEYS[(url, name)] = store.service_key(name, role)
            finally:
                store.close()
        return _SERVICE_KEYS[(url, name)]
