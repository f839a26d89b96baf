"""Who may do what: the roles, the principal of the call in progress, and the one table of gRPC rules.

Roles, from least to most: ``viewer`` (reads everything: every job read-only, exports, models; changes
nothing), ``user`` (creates jobs and, with its own jobs only, starts, cancels, watches, downloads, deploys and
generates; reads exports and models), ``admin`` (everything, every user's jobs, keys and the audit log).
A job another user owns is *not found* to a ``user`` (never "forbidden": its existence is not leaked).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from services.common.errors import NotFound

VIEWER, USER, ADMIN = "viewer", "user", "admin"
ROLES = (VIEWER, USER, ADMIN)
_RANK = {VIEWER: 0, USER: 1, ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """Who calls: a key's name (its owner), its role, and the key's id (empty for the open mode and the
    ``api_token`` service credential)."""

    name: str
    role: str
    key_id: str = ""

    def at_least(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def can_see(self, owner: str | None) -> bool:
        """Whether a job owned by ``owner`` exists for this principal: admins and viewers see every job, a user
        its own only."""
        return self.role in (ADMIN, VIEWER) or (owner is not None and owner == self.name)

    @property
    def owner_filter(self) -> str | None:
        """The owner to filter job lists by: the user's name, None (every job) for admins and viewers."""
        return None if self.role in (ADMIN, VIEWER) else self.name


OPEN = Principal("local", ADMIN)
"""The caller when no key is configured (the embedded default: open on loopback)."""
SERVICE = Principal("service", ADMIN)
"""The caller holding a service's ``api_token``."""

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=OPEN)


def current() -> Principal:
    """The principal of the call in progress (``OPEN`` outside a call or with auth off)."""
    return _current.get()


def set_current(principal: Principal) -> contextvars.Token:
    return _current.set(principal)


def reset_current(token: contextvars.Token) -> None:
    _current.reset(token)


def check_visible(owner: str | None, not_found: str) -> None:
    """``NotFound(not_found)`` (the same message as for an unknown id) unless the caller may see a job of
    ``owner``."""
    if not current().can_see(owner):
        raise NotFound(not_found)


_T = "/aragora.training.v1.TrainerService/"
_E = "/aragora.training.v1.ExporterService/"
_I = "/aragora.training.v1.InferenceService/"
_M = "/aragora.training.v1.ModelExportService/"

RPC_ROLES: dict[str, str] = {
    # The exporter: reading exports is for everyone; changing the shared debates and files is an admin's.
    _E + "ImportDebates": ADMIN,
    _E + "ExportSFT": VIEWER,
    _E + "ExportDPO": VIEWER,
    _E + "ExportGauntlet": VIEWER,
    _E + "WriteExport": ADMIN,
    _E + "GetFormats": VIEWER,
    _E + "GetExportStats": VIEWER,
    # The trainer: jobs (their ownership is checked by the servicers), base models (shared: admin changes).
    _T + "CreateJob": USER,
    _T + "StartJob": USER,
    _T + "CancelJob": USER,
    _T + "GetJob": VIEWER,
    _T + "ListJobs": VIEWER,
    _T + "GetJobCounts": VIEWER,
    _T + "GetJobMetrics": VIEWER,
    _T + "GetJobArtifacts": VIEWER,
    _T + "ReadArtifact": VIEWER,
    _T + "ListBaseModels": VIEWER,
    _T + "WatchJob": VIEWER,
    _T + "CloneJob": USER,
    _T + "PreflightJob": USER,
    _T + "PullBaseModel": ADMIN,
    _T + "ListLocalModels": VIEWER,
    _T + "DeleteLocalModel": ADMIN,
    # Inference: generation uses compute, so it is a user's (with its own jobs or a base model).
    _I + "Generate": USER,
    _I + "DeployJob": USER,
    _I + "UndeployModel": USER,
    _I + "ListDeployments": VIEWER,
    # Model exports of a job (GGUF, merged).
    _M + "StartExport": USER,
    _M + "ListExports": VIEWER,
    _M + "WatchExport": VIEWER,
    _M + "CancelExport": USER,
    # A Ray worker's lines (the trainer's worker credential is a viewer's): what lets it write to a job is the
    # launch's random attempt id, known only to the trainer and the job's relay; any other is told to stop.
    "/aragora.training.v1.WorkerEventsService/ReportLines": VIEWER,
}
"""The least role each RPC needs. An RPC missing here is for admins only (deny by default)."""


def rpc_role(method: str) -> str:
    return RPC_ROLES.get(method, ADMIN)
