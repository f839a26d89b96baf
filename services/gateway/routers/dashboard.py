"""The dashboard pages (/training, /admin/training) and the useFineTuning hook's source."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["dashboard"])
