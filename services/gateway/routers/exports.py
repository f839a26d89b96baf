"""Training-data routes: the SFT / DPO / gauntlet exports, export files, formats and stats (served by the
exporter over gRPC).

Exports stream: the gateway reads the exporter's server-streaming RPC batch by batch and writes each batch out
(as part of one JSON array, or as JSONL lines) before reading the next, so it never holds the whole result.
The batches come as JSONL already (see ``_batches``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import grpc
import orjson
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from aragora.training.v1 import exporter_pb2 as pb
from services.gateway import compat, errors
from services.gateway.deps import ExporterDep, TimeoutDep

router = APIRouter(prefix="/api/training", tags=["exports"])

ExportName = Literal["sft", "dpo", "gauntlet"]
SplitName = Literal["train", "heldout", "all"]
SPLIT_TO_PB = {"train": pb.SPLIT_TRAIN, "heldout": pb.SPLIT_HELDOUT, "all": pb.SPLIT_ALL}
FORMAT_TO_PB = {"sft": pb.EXPORT_FORMAT_SFT, "dpo": pb.EXPORT_FORMAT_DPO, "gauntlet": pb.EXPORT_FORMAT_GAUNTLET}
NDJSON = "application/x-ndjson"

# Which filters apply to which export: a filter given to an export it does not apply to is refused rather than
# silently ignored (min_confidence on a DPO export would otherwise look like it filtered). POST (WriteExport)
# takes these; GET also takes READ_PARAMS.
FILTERS: dict[str, tuple[str, ...]] = {
    "sft": ("min_confidence", "limit", "vertical", "split"),
    "dpo": ("min_confidence_diff", "limit", "vertical", "split"),
    "gauntlet": ("limit", "attack_type", "min_severity"),
}
ALL_FILTERS = ("min_confidence", "min_confidence_diff", "limit", "vertical", "split", "attack_type", "min_severity")
# The parameters Aragora's clients send to GET (its server's handle_export_*): applied or accepted, see
# docs/aragora_clients.md. offset skips records of the stable order; include_debates=false leaves no record
# (every record here comes from a debate); include_critiques / include_patterns / min_success_rate / preview
# have nothing to act on here and are accepted (checked, then ignored); persona filters the gauntlet runs.
READ_PARAMS: dict[str, tuple[str, ...]] = {
    "sft": ("offset", "preview", "min_success_rate", "include_critiques", "include_patterns", "include_debates"),
    "dpo": ("offset", "preview"),
    "gauntlet": ("offset", "preview", "persona"),
}
ALL_READ_PARAMS = ("offset", "preview", "min_success_rate", "include_critiques", "include_patterns",
                   "include_debates", "persona")
WRITE_EXPORT_TIMEOUT = 600.0
"""Deadline of WriteExport: it writes a whole export to disk, which may take far longer than a lookup."""


class InvalidRequest(Exception):
    """A request the gateway refuses itself, answered 422 in the shared error shape."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason

    def response(self) -> JSONResponse:
        return errors.response(422, str(self), "INVALID_ARGUMENT", [{"field": self.field, "reason": self.reason}])


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


class ExportReadParams(ExportFilters):
    """GET's parameters: the filters, and those Aragora's clients send (see READ_PARAMS)."""

    offset: int | None = Field(None, ge=0, description="Skip this many records of the stable order first.")
    preview: bool | None = Field(None, description="Accepted (Aragora's explorer sends it); `limit` bounds a preview.")
    min_success_rate: float | None = Field(None, ge=0, le=1, description="SFT: accepted, no effect here "
                                           "(Aragora's pattern success rate; records here are debates).")
    include_critiques: bool | None = Field(None, description="SFT: accepted, no effect (no critique records here).")
    include_patterns: bool | None = Field(None, description="SFT: accepted, no effect (no pattern records here).")
    include_debates: bool | None = Field(None, description="SFT: false leaves no record (every record is a debate's).")
    persona: str | None = Field(None, max_length=200, description="Gauntlet: only this attacker persona ('all': any).")


def check_filters(fmt: str, filters: ExportFilters, extra: dict[str, tuple[str, ...]] | None = None,
                  lenient: bool = False) -> tuple[dict, list[str]]:
    """The filters given (and the names ignored). A filter of another format is refused, or with ``lenient``
    (an Aragora client: its server ignores them, and its explorer sends min_confidence to every format) left out
    and named in the second list."""
    given = filters.given()
    allowed = FILTERS[fmt] + (extra or {}).get(fmt, ())
    ignored = []
    for name in list(given):
        if name not in allowed:
            if lenient:
                ignored.append(name)
                del given[name]
                continue
            raise InvalidRequest(name, f"does not apply to the {fmt} export (its filters: {', '.join(allowed)})")
    return given, ignored


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
    persona = given.get("persona", "")
    return pb.ExportGauntletRequest(limit=given.get("limit"), attack_type=given.get("attack_type", ""),
                                    min_severity=given.get("min_severity"),
                                    persona="" if persona.strip().lower() == "all" else persona.strip())


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


async def _skipping(blobs: AsyncIterator[bytes], offset: int) -> AsyncIterator[bytes]:
    """The JSONL blobs without their first ``offset`` records (each record is one line)."""
    async for blob in blobs:
        if offset > 0:
            lines = blob.count(b"\n")
            if lines <= offset:
                offset -= lines
                continue
            cut = -1
            for _ in range(offset):
                cut = blob.index(b"\n", cut + 1)
            blob, offset = blob[cut + 1:], 0
        yield blob


async def _jsonl(first, call, offset: int = 0) -> AsyncIterator[bytes]:
    try:
        async for blob in _skipping(_batches(first, call), offset):
            yield blob
    finally:
        call.cancel()


async def _json_array(first, call, offset: int = 0) -> AsyncIterator[bytes]:
    # JSONL -> one JSON array: a newline never occurs inside a JSON text (orjson escapes it in strings), so
    # the records' separating newlines become commas.
    sep = b"["
    try:
        async for blob in _skipping(_batches(first, call), offset):
            yield sep + blob[:-1].replace(b"\n", b",")
            sep = b","
        yield b"[]" if sep == b"[" else b"]"
    finally:
        call.cancel()


async def _envelope(first, call, head: dict, jsonl: bool, offset: int = 0) -> AsyncIterator[bytes]:
    """Aragora's export envelope, streamed: ``{export_type, parameters, exported_at, format, records: [...],
    total_records}``, or with ``format: "jsonl"`` the records as one string ``data`` (lines joined by a
    newline, none after the last), as Aragora's server answers."""
    opening = orjson.dumps(head)[:-1] + (b',"data":"' if jsonl else b',"records":[')
    closing = b'"' if jsonl else b"]"
    total = 0
    try:
        yield opening
        sep = b""
        async for blob in _skipping(_batches(first, call), offset):
            total += blob.count(b"\n")
            lines = blob[:-1]
            if jsonl:
                # The lines as the inside of one JSON string: orjson escapes each character on its own.
                yield (b"\\n" if sep else b"") + orjson.dumps(lines.decode())[1:-1]
            else:
                yield sep + lines.replace(b"\n", b",")
            sep = b","
        yield closing + b',"total_records":' + str(total).encode() + b"}"
    finally:
        call.cancel()


class ExportEnvelope(BaseModel):
    """Aragora's export answer (what its useFineTuning hook, pages and SDKs read); see docs/aragora_clients.md."""

    export_type: Literal["sft", "dpo", "gauntlet"]
    total_records: int
    parameters: dict[str, Any]
    """The parameters applied (as given; ``ignored`` lists those given to an export they do not apply to)."""
    exported_at: datetime
    format: Literal["json", "jsonl"]
    records: list[dict[str, Any]] | None = None
    """With ``format: "json"``: the records."""
    data: str | None = None
    """With ``format: "jsonl"``: the records as JSON Lines in one string."""


EXPORT_DESCRIPTION = (
    "A JSON array of records (the guide's shape); JSONL streamed with format=jsonl or "
    "Accept: application/x-ndjson; Aragora's envelope (ExportEnvelope) to Aragora's clients: a request under "
    "/api/v1/training, or a fetch() stating no Accept (see docs/aragora_clients.md)."
)


@router.get(
    "/export/{export_format}",
    responses={200: {"content": {"application/json": {"schema": {"anyOf": [
                         {"type": "array", "items": {"type": "object"}},
                         {"$ref": "#/components/schemas/ExportEnvelope"}]}},
                     NDJSON: {}},
                     "description": EXPORT_DESCRIPTION}},
)
async def read_export(
    request: Request,
    exporter: ExporterDep,
    export_format: Annotated[str, Path(description="sft, dpo or gauntlet")],
    filters: Annotated[ExportReadParams, Query()],
    output: Annotated[
        Literal["json", "jsonl"] | None, Query(alias="format", description="jsonl streams JSON Lines")
    ] = None,
):
    """Exports training records. Filters: SFT `min_confidence`, `limit`, `vertical`, `split`; DPO
    `min_confidence_diff`, `limit`, `vertical`, `split`; gauntlet `limit`, `attack_type`, `min_severity`,
    `persona`; any: `offset`. Accepted for Aragora's clients with no effect here: `preview`, and for SFT
    `min_success_rate`, `include_critiques`, `include_patterns` (`include_debates=false` leaves no record).
    Unknown parameters (or a filter of another format) are a 422; an Aragora client's filter of another format
    is ignored and listed in `parameters.ignored`. Records come in a stable order (debate id)."""
    aragora = compat.is_aragora_client(request)
    try:
        if export_format not in FILTERS:
            raise InvalidRequest("format", f"must be one of sft, dpo, gauntlet, got {export_format!r}")
        check_query(request, (*ALL_FILTERS, *ALL_READ_PARAMS, "format"))
        given, ignored = check_filters(export_format, filters, READ_PARAMS, lenient=aragora)
    except InvalidRequest as exc:
        return exc.response()
    offset = given.get("offset", 0)
    wants_ndjson = NDJSON in request.headers.get("accept", "")
    jsonl = output == "jsonl" or (output is None and wants_ndjson)
    req = request_for(export_format, given)
    if offset and req.HasField("limit"):
        req.limit += offset
    req.jsonl = True
    if given.get("include_debates") is False:
        call, first = _NoCall(), None  # every record here comes from a debate: none is left
    else:
        call = _open_stream(exporter, export_format, req)
        # Read the first batch before answering: a bad filter or an unreachable exporter becomes a proper error
        # status instead of a broken 200 stream.
        first = await call.read()
        if first is grpc.aio.EOF:
            first = None
    if aragora and not (jsonl and wants_ndjson):
        head = {"export_type": export_format, "parameters": {**given, **({"ignored": ignored} if ignored else {})},
                "exported_at": datetime.now(UTC).isoformat(), "format": "jsonl" if jsonl else "json"}
        return StreamingResponse(_envelope(first, call, head, jsonl, offset), media_type="application/json")
    if jsonl:
        return StreamingResponse(_jsonl(first, call, offset), media_type=NDJSON)
    return StreamingResponse(_json_array(first, call, offset), media_type="application/json")


class _NoCall:
    """A finished stream (no record)."""

    async def read(self):
        return grpc.aio.EOF

    def cancel(self) -> None:
        pass


class ExportFilePublic(BaseModel):
    name: str
    size_bytes: int
    created_at: datetime | None


class StatsFilePublic(ExportFilePublic):
    modified_at: datetime | None = None
    """Aragora's clients read it: the same time as ``created_at`` (an export file is written once, by renaming
    it into place, and never changed)."""


class AragoraStatsPublic(BaseModel):
    """The stats as Aragora's clients get them: each file also has ``modified_at``."""

    available_exporters: list[str]
    export_directory: str
    exported_files: list[StatsFilePublic]
    sft_available: bool
    debates_per_vertical: dict[str, int]
    total_debates: int
    total_gauntlet_runs: int


class WrittenExportPublic(ExportFilePublic):
    record_count: int


def _ts(ts) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


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
        given, _ = check_filters(export_format, query)
        if body is not None:
            from_body, _ = check_filters(export_format, body)
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
async def read_stats(request: Request, exporter: ExporterDep, timeout: TimeoutDep) -> StatsPublic:
    """The exporters available, the export directory and its files, and the debates stored per vertical.
    Aragora's clients (docs/aragora_clients.md) get ``AragoraStatsPublic`` (each file with ``modified_at``)."""
    s = await exporter.GetExportStats(pb.GetExportStatsRequest(), timeout=timeout)
    aragora = compat.is_aragora_client(request)
    files = [ExportFilePublic(name=f.name, size_bytes=f.size_bytes, created_at=_ts(f.created_at))
             for f in s.exported_files]
    out = dict(
        available_exporters=list(s.available_exporters),
        export_directory=s.export_directory,
        sft_available=s.sft_available,
        debates_per_vertical=dict(sorted(s.debates_per_vertical.items())),
        total_debates=s.total_debates,
        total_gauntlet_runs=s.total_gauntlet_runs,
    )
    if not aragora:
        return StatsPublic(exported_files=files, **out)
    files = [StatsFilePublic(**f.model_dump(), modified_at=f.created_at) for f in files]
    return JSONResponse(jsonable_encoder(AragoraStatsPublic(exported_files=files, **out)))


class FormatPublic(BaseModel):
    name: str
    description: str
    endpoint: str
    json_schema: dict
    example: dict
    schema_: dict = Field(default_factory=dict, alias="schema", serialization_alias="schema")
    """The same JSON Schema as ``json_schema``, under the name Aragora's clients read."""
    use_case: str = ""
    """What the format is for (Aragora's clients show it)."""

    model_config = ConfigDict(populate_by_name=True)


class FormatsPublic(BaseModel):
    formats: dict[str, FormatPublic]
    output_formats: list[str] = ["json", "jsonl"]
    """The answers of GET /export/{format}: ``json`` (an array) and ``jsonl`` (JSON Lines)."""
    endpoints: dict[str, str] = {}
    """Each export format's endpoint (``sft``: ``/api/training/export/sft``, ...)."""


USE_CASES = {
    "sft": "Supervised fine-tuning on the consensus answers of debates (instruction -> winning answer).",
    "dpo": "Preference training (DPO): the consensus answer preferred over a losing proposal.",
    "gauntlet": "Training and evaluating robustness on adversarial (gauntlet) attacks and their outcomes.",
}


@router.get("/formats", response_model=FormatsPublic)
async def read_formats(request: Request, exporter: ExporterDep, timeout: TimeoutDep) -> FormatsPublic:
    """Documentation of every export format and of the import record: its JSON Schema, an example record and
    its endpoint."""
    resp = await exporter.GetFormats(pb.GetFormatsRequest(), timeout=timeout)
    formats = {}
    for f in resp.formats:
        schema = json.loads(f.json_schema)
        formats[f.name] = FormatPublic(
            name=f.name, description=f.description, endpoint=f.endpoint, json_schema=schema,
            example=json.loads(f.example_json) if f.example_json else {}, schema=schema,
            use_case=USE_CASES.get(f.name, f.description),
        )
    # Under the prefix the client used (Aragora's server lists its /api/v1 paths).
    prefix = compat.V1_PREFIX if compat.via_v1(request) else compat.GUIDE_PREFIX
    return FormatsPublic(formats=formats,
                         endpoints={name: f"{prefix}/export/{name}" for name in FILTERS if name in formats})
