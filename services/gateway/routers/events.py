"""Live job progress for browsers: Server-Sent Events from the trainer's WatchJob stream."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/training", tags=["events"])
