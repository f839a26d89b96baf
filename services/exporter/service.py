"""The exporter's gRPC servicer: converts messages and delegates to the importer and the exporters.

``to_pb``/``from_pb`` helpers live here, beside the servicer; nothing below this module sees protobuf.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC
from itertools import islice
from pathlib import PurePath

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from aragora.training.v1 import exporter_pb2 as pb
from aragora.training.v1 import exporter_pb2_grpc
from services.auth import policy
from services.common.errors import InvalidArgument
from services.exporter import formats
from services.exporter.exports import (
    ExportedFile,
    Exporter,
    ExportFilter,
    ExportStats,
    dpo_record,
    gauntlet_record,
    sft_record,
)
from services.exporter.formats import SFT_INSTRUCTION
from services.exporter.importer import CHUNK, Importer, ImportSummary
from services.exporter.store import DebateStore

log = logging.getLogger(__name__)

SPLIT_FROM_PB = {pb.SPLIT_UNSPECIFIED: "all", pb.SPLIT_ALL: "all", pb.SPLIT_TRAIN: "train", pb.SPLIT_HELDOUT: "heldout"}
FORMAT_FROM_PB = {pb.EXPORT_FORMAT_SFT: "sft", pb.EXPORT_FORMAT_DPO: "dpo", pb.EXPORT_FORMAT_GAUNTLET: "gauntlet"}
IMPORT_BUFFER_BYTES = 8 * 1024 * 1024
"""Raw import records buffered before a chunk is validated and written (besides ``CHUNK`` records)."""


# --- from_pb ----------------------------------------------------------------------------------------------

def _split(value: int) -> str:
    return SPLIT_FROM_PB.get(value, f"<unknown split {value}>")


def sft_filter_from_pb(r: pb.ExportSFTRequest) -> ExportFilter:
    return ExportFilter(
        min_confidence=r.min_confidence if r.HasField("min_confidence") else None,
        limit=r.limit if r.HasField("limit") else None,
        vertical=r.vertical,
        split=_split(r.split),
    )


def dpo_filter_from_pb(r: pb.ExportDPORequest) -> ExportFilter:
    return ExportFilter(
        min_confidence_diff=r.min_confidence_diff if r.HasField("min_confidence_diff") else None,
        limit=r.limit if r.HasField("limit") else None,
        vertical=r.vertical,
        split=_split(r.split),
    )


def gauntlet_filter_from_pb(r: pb.ExportGauntletRequest) -> ExportFilter:
    return ExportFilter(
        limit=r.limit if r.HasField("limit") else None,
        attack_type=r.attack_type,
        min_severity=r.min_severity if r.HasField("min_severity") else None,
        persona=r.persona,
    )


def debate_from_pb(d: pb.Debate) -> dict:
    """A typed Debate as the import record's JSON object (validated by the same rules as JSON records).
    Proto3 cannot tell an unset number from 0: a round number 0 means "its position", a consensus confidence
    of 0 means "compute it from the votes"."""
    rec: dict = {
        "type": "debate",
        "id": d.id,
        "task": d.task,
        "vertical": d.vertical,
        "created_at": d.created_at.ToDatetime(tzinfo=UTC) if d.HasField("created_at") else None,
        "rounds": [
            {"number": r.number or None, "proposals": [{"agent": p.agent, "content": p.content} for p in r.proposals]}
            for r in d.rounds
        ],
        "critiques": [
            {"round": c.round, "agent": c.agent, "target_agent": c.target_agent, "issues": list(c.issues),
             "suggestions": list(c.suggestions), "severity": c.severity}
            for c in d.critiques
        ],
        "votes": [{"agent": v.agent, "choice": v.choice, "confidence": v.confidence} for v in d.votes],
    }
    if d.HasField("consensus"):
        c = d.consensus
        rec["consensus"] = {"reached": c.reached, "final_answer": c.final_answer,
                            "confidence": c.confidence or None, "winner": c.winner,
                            "dissenting_views": list(c.dissenting_views)}
    return rec


def gauntlet_from_pb(g: pb.GauntletRun) -> dict:
    return {"type": "gauntlet", "id": g.id, "prompt": g.prompt, "response": g.response, "attack_type": g.attack_type,
            "severity": g.severity, "success": g.success, "findings": list(g.findings), "persona": g.persona}


# --- to_pb ------------------------------------------------------------------------------------------------

def sft_batch_to_pb(page: list[tuple]) -> pb.ExportSFTResponse:
    return pb.ExportSFTResponse(records=[
        pb.SFTRecord(instruction=SFT_INSTRUCTION, input=r[1], output=r[2],
                     metadata=pb.SFTMetadata(debate_id=r[0], consensus_confidence=r[3], rounds=r[4], vertical=r[5]))
        for r in page
    ])


def dpo_batch_to_pb(page: list[tuple]) -> pb.ExportDPOResponse:
    return pb.ExportDPOResponse(records=[
        pb.DPORecord(prompt=r[2], chosen=r[3], rejected=r[4],
                     metadata=pb.DPOMetadata(debate_id=r[0], confidence_diff=round(r[5], 6), vertical=r[6]))
        for r in page
    ])


def gauntlet_batch_to_pb(page: list[tuple]) -> pb.ExportGauntletResponse:
    return pb.ExportGauntletResponse(records=[
        pb.GauntletRecord(prompt=r[1], response=r[2], attack_type=r[3], success=bool(r[4]), findings=r[5])
        for r in page
    ])


JSONL_MESSAGE_BYTES = 48 * 1024
"""Target size of one JSONL export message. Messages that fit gRPC's initial 64 KiB flow-control window keep the
exporter -> gateway -> client pipeline moving; 1 MB messages halved the throughput in benchmarks/export_bench.py,
while a fixed record count would make messages of short records (gauntlet) needlessly many."""


def jsonl_messages(pages: Iterator[list[tuple]], record: Callable[[tuple], dict], response: type,
                   target: int = JSONL_MESSAGE_BYTES) -> Iterator:
    """The rows as JSONL messages of about ``target`` bytes (the records the REST API and the export files
    carry), for clients that set ``jsonl``: orjson straight from the rows is several times cheaper than building
    protobuf records that the gateway would only turn back into JSON."""
    nl = orjson.OPT_APPEND_NEWLINE
    lines: list[bytes] = []
    size = 0
    for page in pages:
        for r in page:
            line = orjson.dumps(record(r), option=nl)
            lines.append(line)
            size += len(line)
            if size >= target:
                yield response(jsonl=b"".join(lines))
                lines, size = [], 0
    if lines:
        yield response(jsonl=b"".join(lines))


def summary_to_pb(s: ImportSummary) -> pb.ImportDebatesResponse:
    return pb.ImportDebatesResponse(
        imported=s.imported, updated=s.updated, rejected=s.rejected,
        rejections=[pb.ImportRejection(line=r.line, field=r.field, reason=r.reason) for r in s.rejections],
    )


def file_to_pb(f: ExportedFile) -> pb.ExportedFile:
    ts = Timestamp()
    ts.FromDatetime(f.created_at)
    return pb.ExportedFile(name=f.name, size_bytes=f.size_bytes, created_at=ts)


def stats_to_pb(s: ExportStats) -> pb.GetExportStatsResponse:
    return pb.GetExportStatsResponse(
        available_exporters=s.available_exporters,
        # An absolute server path is for admins; others see the folder's name.
        export_directory=s.export_directory if policy.current().is_admin else PurePath(s.export_directory).name,
        exported_files=[file_to_pb(f) for f in s.exported_files], sft_available=s.sft_available,
        debates_per_vertical=s.debates_per_vertical, total_debates=s.total_debates,
        total_gauntlet_runs=s.total_gauntlet_runs,
    )


MESSAGES_PER_HOP = 4
"""Messages produced per hop to the worker thread: a thread hop per 48 KiB message cost a measurable share of
the CPU; a few at a time keeps messages small without paying it for each."""


async def _stream(messages: Iterator, pages: Iterator[list[tuple]]) -> AsyncIterator:
    """Streams ``messages`` (made from ``pages``), producing the next few in a worker thread while the current
    ones are sent, so the event loop never waits on the database."""

    def produce() -> list:
        return list(islice(messages, MESSAGES_PER_HOP))

    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, produce)
    try:
        while True:
            # Shielded: a client going away cancels this generator, but the thread runs on regardless, and
            # the generators may only be closed once it is done (see below).
            batch = await asyncio.shield(pending)
            if not batch:
                return
            pending = loop.run_in_executor(None, produce)
            for msg in batch:
                yield msg
    finally:
        # Closing the generators closes the database cursor; a generator still running in its thread cannot be
        # closed, so then they are closed when the thread is done.
        def close(_=None) -> None:
            for gen in (messages, pages):
                try:
                    getattr(gen, "close", lambda: None)()
                except Exception:  # noqa: BLE001 - a failed clean-up must not mask the stream's outcome
                    log.exception("closing an export stream failed")

        if pending.done():
            close()
        else:
            pending.add_done_callback(close)


def _messages(pages: Iterator[list[tuple]], jsonl: bool, record: Callable, response: type,
              to_pb: Callable) -> Iterator:
    return jsonl_messages(pages, record, response) if jsonl else map(to_pb, pages)


class ExporterServicer(exporter_pb2_grpc.ExporterServiceServicer):
    """ExporterService over the debate store."""

    def __init__(self, store: DebateStore, exporter: Exporter) -> None:
        self.store = store
        self.exporter = exporter

    async def GetFormats(self, request, context):
        return pb.GetFormatsResponse(formats=[pb.FormatDescription(**f) for f in formats.describe_formats()])

    async def ImportDebates(self, request_iterator, context):
        imp = Importer(self.store)
        buffer: list[tuple[str, object, int]] = []
        size = 0

        def process(items: list[tuple[str, object, int]]) -> None:
            for kind, payload, line in items:
                if kind == "record_json":
                    imp.add_json(payload, line)
                elif kind == "debate":
                    imp.add_object(debate_from_pb(payload), line)
                elif kind == "gauntlet_run":
                    imp.add_object(gauntlet_from_pb(payload), line)
                else:
                    imp.reject(line, "record", "the request carries no record")

        async for req in request_iterator:
            kind = req.WhichOneof("record")
            payload = req.record_json if kind == "record_json" else getattr(req, kind) if kind else None
            buffer.append((kind, payload, req.line))
            size += req.ByteSize()
            if len(buffer) >= CHUNK or size >= IMPORT_BUFFER_BYTES:
                items, buffer, size = buffer, [], 0
                await asyncio.to_thread(process, items)
        await asyncio.to_thread(process, buffer)
        summary = await asyncio.to_thread(imp.finish)
        return summary_to_pb(summary)

    async def ExportSFT(self, request, context):
        pages = self.exporter.sft_rows(sft_filter_from_pb(request))
        msgs = _messages(pages, request.jsonl, sft_record, pb.ExportSFTResponse, sft_batch_to_pb)
        async for msg in _stream(msgs, pages):
            yield msg

    async def ExportDPO(self, request, context):
        pages = self.exporter.dpo_rows(dpo_filter_from_pb(request))
        msgs = _messages(pages, request.jsonl, dpo_record, pb.ExportDPOResponse, dpo_batch_to_pb)
        async for msg in _stream(msgs, pages):
            yield msg

    async def ExportGauntlet(self, request, context):
        pages = self.exporter.gauntlet_rows(gauntlet_filter_from_pb(request))
        msgs = _messages(pages, request.jsonl, gauntlet_record, pb.ExportGauntletResponse, gauntlet_batch_to_pb)
        async for msg in _stream(msgs, pages):
            yield msg

    async def WriteExport(self, request, context):
        fmt = FORMAT_FROM_PB.get(request.format)
        if fmt is None:
            raise InvalidArgument("must be sft, dpo or gauntlet", field="format")
        f = {"sft": lambda: sft_filter_from_pb(request.sft), "dpo": lambda: dpo_filter_from_pb(request.dpo),
             "gauntlet": lambda: gauntlet_filter_from_pb(request.gauntlet)}[fmt]()
        written, count = await asyncio.to_thread(self.exporter.write, fmt, f)
        return pb.WriteExportResponse(file=file_to_pb(written), record_count=count)

    async def GetExportStats(self, request, context):
        return stats_to_pb(await asyncio.to_thread(self.exporter.stats))
