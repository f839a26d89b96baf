"""Debate import routes (served by the exporter over gRPC)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/debates", tags=["debates"])
