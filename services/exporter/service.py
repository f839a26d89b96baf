"""The exporter's gRPC servicer: converts messages and delegates to the importer and the exporters.

``to_pb``/``from_pb`` helpers live here, beside the servicer; nothing below this module sees protobuf.
"""

from __future__ import annotations

import asyncio
from functools import partial
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timezone

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from aragora.training.v1 import exporter_pb2 as pb
from aragora.training.v1 import exporter_pb2_grpc
from services.common.errors import InvalidArgument
from services.exporter import formats
from services.exporter.exports import (
    Exporter,
    ExportedFile,
    ExportFilter,
    ExportStats,
    dpo_record,
    gauntlet_record,
    sft_record,
)
from services.exporter.formats import SFT_INSTRUCTION
from services.exporter.importer import CHUNK, Importer, ImportSummary
from services.exporter.store import DebateStore

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
        "created_at": d.created_at.ToDatetime(tzinfo=timezone.utc) if d.HasField("created_at") else None,
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


def jsonl_batch_to_pb(record: Callable[[tuple], dict], response: type, page: list[tuple]):
    """A page as one JSONL blob (the records the REST API and the export files carry), for clients that set
    ``jsonl``: orjson straight from the rows is several times cheaper than building protobuf records."""
    nl = orjson.OPT_APPEND_NEWLINE
    return response(jsonl=b"".join([orjson.dumps(record(r), option=nl) for r in page]))


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
        available_exporters=s.available_exporters, export_directory=s.export_directory,
        exported_files=[file_to_pb(f) for f in s.exported_files], sft_available=s.sft_available,
        debates_per_vertical=s.debates_per_vertical, total_debates=s.total_debates,
        total_gauntlet_runs=s.total_gauntlet_runs,
    )


async def _stream(pages: Iterator[list[tuple]], to_pb: Callable) -> AsyncIterator:
    """Streams pages as messages, reading (and converting) the next page in a worker thread while the current
    one is sent, so the event loop never waits on the database."""

    def next_message():
        page = next(pages, None)
        return None if page is None else to_pb(page)

    pending = asyncio.ensure_future(asyncio.to_thread(next_message))
    try:
        while True:
            msg = await pending
            if msg is None:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next_message))
            yield msg
    finally:
        # Closing the generator closes its database cursor; if a read is still running in its thread (the
        # client went away), close once it is done: a running generator cannot be closed.
        if pending.done():
            pages.close()
        else:
            pending.add_done_callback(lambda _: pages.close())


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
        to_pb = partial(jsonl_batch_to_pb, sft_record, pb.ExportSFTResponse) if request.jsonl else sft_batch_to_pb
        async for msg in _stream(self.exporter.sft_rows(sft_filter_from_pb(request)), to_pb):
            yield msg

    async def ExportDPO(self, request, context):
        to_pb = partial(jsonl_batch_to_pb, dpo_record, pb.ExportDPOResponse) if request.jsonl else dpo_batch_to_pb
        async for msg in _stream(self.exporter.dpo_rows(dpo_filter_from_pb(request)), to_pb):
            yield msg

    async def ExportGauntlet(self, request, context):
        to_pb = (partial(jsonl_batch_to_pb, gauntlet_record, pb.ExportGauntletResponse) if request.jsonl
                 else gauntlet_batch_to_pb)
        async for msg in _stream(self.exporter.gauntlet_rows(gauntlet_filter_from_pb(request)), to_pb):
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
