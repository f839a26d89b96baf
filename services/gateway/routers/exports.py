"""Training-data routes: the export formats (served by the exporter over gRPC)."""

from __future__ import annotations

import json

from fastapi import APIRouter
from pydantic import BaseModel

from aragora.training.v1 import exporter_pb2
from services.gateway.deps import ExporterDep, TimeoutDep

router = APIRouter(prefix="/api/training", tags=["exports"])


class FormatPublic(BaseModel):
    name: str
    description: str
    endpoint: str
    json_schema: dict
    example: dict


class FormatsPublic(BaseModel):
    formats: dict[str, FormatPublic]


@router.get("/formats", response_model=FormatsPublic)
async def read_formats(exporter: ExporterDep, timeout: TimeoutDep) -> FormatsPublic:
    """Documentation of every export format: its JSON Schema, an example record and its endpoint."""
    resp = await exporter.GetFormats(exporter_pb2.GetFormatsRequest(), timeout=timeout)
    return FormatsPublic(
        formats={
            f.name: FormatPublic(
                name=f.name,
                description=f.description,
                endpoint=f.endpoint,
                json_schema=json.loads(f.json_schema),
                example=json.loads(f.example_json) if f.example_json else {},
            )
            for f in resp.formats
        }
    )
