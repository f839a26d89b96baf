"""Domain errors shared by the services.

Managers and stores raise these; one server interceptor (``services.common.grpc_server.ErrorInterceptor``)
turns them into gRPC status codes, and the gateway turns the codes into HTTP status codes with one table.
An ``InvalidArgument`` names the field at fault, carried to clients as a ``google.rpc.BadRequest`` detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its dotted path (``training_config.lora_r``) and why it is bad."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class DomainError(Exception):
    """An expected failure with the gRPC status it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class InvalidArgument(DomainError):
    """A bad request; ``violations`` lists every bad field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation] | str, field: str = "") -> None:
        if isinstance(violations, str):
            violations = [FieldViolation(field, violations)]
        self.violations = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations))

    @classmethod
    def from_pydantic(cls, exc, prefix: str = "") -> InvalidArgument:
        """Builds the error from a ``pydantic.ValidationError``, one violation per error."""
        out = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
            if prefix:
                loc = f"{prefix}.{loc}" if loc else prefix
            msg = err.get("msg", "invalid value")
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            out.append(FieldViolation(loc, msg))
        return cls(out)
