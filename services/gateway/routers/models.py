"""Base-model catalogue routes (served by the trainer over gRPC)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/training", tags=["models"])
