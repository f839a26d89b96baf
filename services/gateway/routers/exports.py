"""Training-data routes: the SFT / DPO / gauntlet exports, export files, formats and stats (served by the
exporter over gRPC).

Exports stream: the gateway reads the exporter's server-streaming RPC batch by batch and writes each batch out
(as part of one JSON array, or as JSONL lines) before reading the next, so it never holds the whole result.
The batches come as JSONL already (see ``_batches``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Annotated, Literal

import grpc
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from aragora.training.v1 import exporter_pb2 as pb
from services.gateway.deps import ExporterDep, TimeoutDep

router = APIRouter(prefix="/api/training", tags=["exports"])

ExportName = Literal["sft", "dpo", "gauntlet"]
SplitName = Literal["train", "heldout", "all"]
SPLIT_TO_PB = {"train": pb.SPLIT_TRAIN, "heldout": pb.SPLIT_HELDOUT, "all": pb.SPLIT_ALL}
FORMAT_TO_PB = {"sft": pb.EXPORT_FORMAT_SFT, "dpo": pb.EXPORT_FORMAT_DPO, "gauntlet": pb.EXPORT_FORMAT_GAUNTLET}
NDJSON = "application/x-ndjson"

# Which filters apply to which export: a filter given to an export it does not apply to is refused rather than
# silently ignored (min_confidence on a DPO export would otherwise look like it filtered).
FILTERS: dict[str, tuple[str, ...]] = {
    "sft": ("min_confidence", "limit", "vertical", "split"),
    "dpo": ("min_confidence_diff", "limit", "vertical", "split"),
    "gauntlet": ("limit", "attack_type", "min_severity"),
}
ALL_FILTERS = ("min_confidence", "min_confidence_diff", "limit", "vertical", "split", "attack_type", "min_severity")
WRITE_EXPORT_TIMEOUT = 600.0
"""Deadline of WriteExport: it writes a whole export to disk, which may take far longer than a lookup."""


class InvalidRequest(Exception):
    """A request the gateway refuses itself, answered 422 in the shared error shape."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": str(self), "code": "INVALID_ARGUMENT",
                             "errors": [{"field": self.field, "reason": self.reason}]}, status_code=422)


class ExportFilters(BaseModel):
    """The filters of an export; each applies to some formats only (see the endpoint's description)."""

    # Unknown query parameters are refused by check_query (with the list of known ones); see ExportFiltersBody.
    model_config = ConfigDict(extra="ignore")
    min_confidence: float | None = Field(None, ge=0, le=1, description="SFT: minimum consensus confidence.")
    min_confidence_diff: float | None = Field(None, ge=0, le=1, description="DPO: minimum confidence difference.")
    limit: int | None = Field(None, ge=1, description="The most records to export.")
    vertical: str | None = Field(None, description="SFT, DPO: only this vertical (legal, medical, ...).")
    split: SplitName | None = Field(None, description="SFT, DPO: train, heldout (20% by debate id) or all.")
    attack_type: str | None = Field(None, description="Gauntlet: only this attack type.")
    min_severity: float | None = Field(None, ge=0, le=10, description="Gauntlet: minimum severity (0-10).")

    def given(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None and v != ""}


class ExportFiltersBody(ExportFilters):
    """The filters as a JSON body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def check_filters(fmt: str, filters: ExportFilters) -> dict:
    given = filters.given()
    for name in given:
        if name not in FILTERS[fmt]:
            raise InvalidRequest(name, f"does not apply to the {fmt} export (its filters: {', '.join(FILTERS[fmt])})")
    return given


def check_query(request: Request, allowed: tuple[str, ...]) -> None:
    """Unknown query parameters are refused, naming the first one, rather than ignored."""
    for name in request.query_params:
        if name not in allowed:
            raise InvalidRequest(name, f"unknown query parameter (known: {', '.join(allowed)})")


def request_for(fmt: str, given: dict):
    """The export RPC's request message for the given filters."""
    if fmt == "sft":
        return pb.ExportSFTRequest(min_confidence=given.get("min_confidence"), limit=given.get("limit"),
                                   vertical=given.get("vertical", ""), split=SPLIT_TO_PB[given.get("split", "all")])
    if fmt == "dpo":
        return pb.ExportDPORequest(min_confidence_diff=given.get("min_confidence_diff"), limit=given.get("limit"),
                                   vertical=given.get("vertical", ""), split=SPLIT_TO_PB[given.get("split", "all")])
    return pb.ExportGauntletRequest(limit=given.get("limit"), attack_type=given.get("attack_type", ""),
                                    min_severity=given.get("min_severity"))


# --- streaming ----------------------------------------------------------------------------------------------
# The gateway asks the exporter for JSONL batches (``jsonl=True``): the exporter serialises its rows with orjson
# into the records of the user guide, and the gateway passes the bytes on. Building protobuf records only to
# turn them back into JSON here cost more than the database query itself (see benchmarks/export_bench.py).


def _open_stream(exporter, fmt: str, req):
    # No deadline on the stream: an export of any size may take as long as it takes to read; the client
    # going away cancels it.
    return {"sft": exporter.ExportSFT, "dpo": exporter.ExportDPO, "gauntlet": exporter.ExportGauntlet}[fmt](req)


async def _batches(first, call) -> AsyncIterator[bytes]:
    """The JSONL blob of each message, the first one already read."""
    msg = first
    while msg is not None:
        if msg.jsonl:
            yield msg.jsonl
        msg = await call.read()
        if msg is grpc.aio.EOF:
            msg = None


async def _jsonl(first, call) -> AsyncIterator[bytes]:
    try:
        async for blob in _batches(first, call):
            yield blob
    finally:
        call.cancel()


async def _json_array(first, call) -> AsyncIterator[bytes]:
    # JSONL -> one JSON array: a newline never occurs inside a JSON text (orjson escapes it in strings), so
    # the records' separating newlines become commas.
    sep = b"["
    try:
        async for blob in _batches(first, call):
            yield sep + blob[:-1].replace(b"\n", b",")
            sep = b","
        yield b"[]" if sep == b"[" else b"]"
    finally:
        call.cancel()


@router.get(
    "/export/{export_format}",
    responses={200: {"content": {"application/json": {}, NDJSON: {}},
                     "description": "A JSON array of records, or JSONL with format=jsonl / Accept: application/x-ndjson"}},
)
async def read_export(
    request: Request,
    exporter: ExporterDep,
    export_format: Annotated[str, Path(description="sft, dpo or gauntlet")],
    filters: Annotated[ExportFilters, Query()],
    output: Annotated[Literal["json", "jsonl"] | None, Query(alias="format", description="jsonl streams JSON Lines")] = None,
):
    """Exports training records. Filters: SFT `min_confidence`, `limit`, `vertical`, `split`; DPO
    `min_confidence_diff`, `limit`, `vertical`, `split`; gauntlet `limit`, `attack_type`, `min_severity`.
    Unknown parameters (or a filter of another format) are a 422. Records come in a stable order (debate id)."""
    try:
        if export_format not in FILTERS:
            raise InvalidRequest("format", f"must be one of sft, dpo, gauntlet, got {export_format!r}")
        check_query(request, (*ALL_FILTERS, "format"))
        given = check_filters(export_format, filters)
    except InvalidRequest as exc:
        return exc.response()
    jsonl = output == "jsonl" or (output is None and NDJSON in request.headers.get("accept", ""))
    req = request_for(export_format, given)
    req.jsonl = True
    call = _open_stream(exporter, export_format, req)
    # Read the first batch before answering: a bad filter or an unreachable exporter becomes a proper error
    # status instead of a broken 200 stream.
    first = await call.read()
    if first is grpc.aio.EOF:
        first = None
    if jsonl:
        return StreamingResponse(_jsonl(first, call), media_type=NDJSON)
    return StreamingResponse(_json_array(first, call), media_type="application/json")


class ExportFilePublic(BaseModel):
    name: str
    size_bytes: int
    created_at: datetime | None


class WrittenExportPublic(ExportFilePublic):
    record_count: int


def _ts(ts) -> datetime | None:
    return ts.ToDatetime(tzinfo=timezone.utc) if ts.seconds or ts.nanos else None


@router.post("/export/{export_format}", response_model=WrittenExportPublic)
async def create_export(
    request: Request,
    exporter: ExporterDep,
    export_format: Annotated[str, Path(description="sft, dpo or gauntlet")],
    query: Annotated[ExportFilters, Query()],
    body: Annotated[ExportFiltersBody | None, Body()] = None,
):
    """Writes one export as a JSONL file into the exporter's export directory and returns its name, size and
    record count. Filters as for `GET`, as query parameters or a JSON body (not the same one in both)."""
    try:
        if export_format not in FILTERS:
            raise InvalidRequest("format", f"must be one of sft, dpo, gauntlet, got {export_format!r}")
        check_query(request, ALL_FILTERS)
        given = check_filters(export_format, query)
        if body is not None:
            from_body = check_filters(export_format, body)
            both = sorted(set(given) & set(from_body))
            if both:
                raise InvalidRequest(both[0], "given both in the query and in the body")
            given.update(from_body)
    except InvalidRequest as exc:
        return exc.response()
    req = pb.WriteExportRequest(format=FORMAT_TO_PB[export_format])
    getattr(req, export_format).CopyFrom(request_for(export_format, given))
    resp = await exporter.WriteExport(req, timeout=WRITE_EXPORT_TIMEOUT)
    return WrittenExportPublic(name=resp.file.name, size_bytes=resp.file.size_bytes,
                               created_at=_ts(resp.file.created_at), record_count=resp.record_count)


class StatsPublic(BaseModel):
    available_exporters: list[str]
    export_directory: str
    exported_files: list[ExportFilePublic]
    sft_available: bool
    debates_per_vertical: dict[str, int]
    total_debates: int
    total_gauntlet_runs: int


@router.get("/stats", response_model=StatsPublic)
async def read_stats(exporter: ExporterDep, timeout: TimeoutDep) -> StatsPublic:
    """The exporters available, the export directory and its files, and the debates stored per vertical."""
    s = await exporter.GetExportStats(pb.GetExportStatsRequest(), timeout=timeout)
    return StatsPublic(
        available_exporters=list(s.available_exporters),
        export_directory=s.export_directory,
        exported_files=[ExportFilePublic(name=f.name, size_bytes=f.size_bytes, created_at=_ts(f.created_at))
                        for f in s.exported_files],
        sft_available=s.sft_available,
        debates_per_vertical=dict(sorted(s.debates_per_vertical.items())),
        total_debates=s.total_debates,
        total_gauntlet_runs=s.total_gauntlet_runs,
    )


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
    """Documentation of every export format and of the import record: its JSON Schema, an example record and
    its endpoint."""
    resp = await exporter.GetFormats(pb.GetFormatsRequest(), timeout=timeout)
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
