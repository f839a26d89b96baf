"""Debate import routes (served by the exporter over gRPC).

The body is a JSON array of import records or JSONL (one record per line). JSONL is streamed: lines are read
from the request body and sent on the exporter's client-streaming ImportDebates as they arrive, so a large file
is never held whole. A JSON array is parsed as a whole (it cannot be split before it is parsed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aragora.training.v1 import exporter_pb2 as pb
from services.gateway import errors
from services.gateway.deps import ExporterDep

router = APIRouter(prefix="/api/debates", tags=["debates"])

IMPORT_TIMEOUT = 600.0
"""Deadline of one import: it lasts as long as the upload, far longer than a lookup."""
MAX_LINE_BYTES = 32 * 1024 * 1024
"""Longest JSONL line passed on (the exporter refuses any text field over 100,000 characters anyway)."""
MAX_ARRAY_BYTES = 256 * 1024 * 1024
"""Largest JSON-array body (it must be held whole to be parsed; JSONL has no such limit)."""


class RejectionPublic(BaseModel):
    line: int
    field: str
    reason: str


class ImportSummaryPublic(BaseModel):
    imported: int
    updated: int
    rejected: int
    rejections: list[RejectionPublic]


def _invalid(reason: str, field: str = "body", status: int = 422) -> JSONResponse:
    return errors.response(status, f"{field}: {reason}", "INVALID_ARGUMENT", [{"field": field, "reason": reason}])


class _Body:
    """The request body, with the first bytes peeked to tell a JSON array from JSONL."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream().__aiter__()
        self.head = b""
        self.done = False

    async def peek_first_byte(self) -> bytes:
        while not self.done and not self.head.strip():
            try:
                self.head += await self._stream.__anext__()
            except StopAsyncIteration:
                self.done = True
        stripped = self.head.lstrip()
        return stripped[:1]

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        if not self.done:
            async for chunk in self._stream:
                yield chunk


class _Lines:
    """Splits a streamed body into numbered JSONL lines; lines it cannot pass on are rejected here."""

    def __init__(self) -> None:
        self.local_rejections: list[dict] = []
        self.records = 0

    async def requests(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[pb.ImportDebatesRequest]:
        n = 0  # lines completed so far
        buf: list[bytes] = []  # the current line's pieces (searching only new chunks for newlines)
        buffered = 0
        skipping = False  # inside a line already rejected as too long
        async for chunk in chunks:
            if b"\n" not in chunk:
                if not skipping:
                    buf.append(chunk)
                    buffered += len(chunk)
                    if buffered > MAX_LINE_BYTES:
                        self._reject(n + 1, f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
                        buf, buffered, skipping = [], 0, True
                continue
            *lines, tail = (b"".join(buf) + chunk).split(b"\n")
            for line in lines:
                n += 1
                if skipping:
                    skipping = False
                    continue
                req = self._request(n, line)
                if req is not None:
                    yield req
            buf, buffered = [tail], len(tail)
        if buf and not skipping:
            req = self._request(n + 1, b"".join(buf))
            if req is not None:
                yield req

    def _request(self, n: int, line: bytes) -> pb.ImportDebatesRequest | None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return None
        self.records += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._reject(n, f"not valid UTF-8 (byte {exc.start})")
            return None
        return pb.ImportDebatesRequest(record_json=text, line=n)

    def _reject(self, n: int, reason: str) -> None:
        self.local_rejections.append({"line": n, "field": "", "reason": reason})


async def _array_requests(items: list) -> AsyncIterator[pb.ImportDebatesRequest]:
    for i, item in enumerate(items, start=1):
        # Each element goes on as its own JSON text: the exporter validates every source the same way.
        yield pb.ImportDebatesRequest(record_json=orjson.dumps(item).decode(), line=i)


@router.post("/import", response_model=ImportSummaryPublic)
async def create_debates_import(request: Request, exporter: ExporterDep):
    """Imports debates and gauntlet runs: a JSON array of import records or JSONL (one per line; see the
    "import" schema of `GET /api/training/formats`). Each bad record is rejected with its line (the element's
    1-based position for an array), field and reason; the good ones are kept; an id imported before is
    updated. A body that is empty, truncated or not JSON at all is a 422."""
    body = _Body(request)
    first = await body.peek_first_byte()
    if not first:
        return _invalid("is empty: send a JSON array of records or JSONL")
    lines = _Lines()
    if first == b"[":
        raw = b""
        async for chunk in body.chunks():
            raw += chunk
            if len(raw) > MAX_ARRAY_BYTES:
                return _invalid(f"a JSON array body is limited to {MAX_ARRAY_BYTES // (1024 * 1024)} MiB; "
                                "send JSONL for more", status=413)
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _invalid(f"not valid JSON (truncated?): {exc}")
        del raw
        if not items:
            return _invalid("is an empty array")
        resp = await exporter.ImportDebates(_array_requests(items), timeout=IMPORT_TIMEOUT)
        total = len(items)
    else:
        resp = await exporter.ImportDebates(lines.requests(body.chunks()), timeout=IMPORT_TIMEOUT)
        total = lines.records
    rejections = sorted(
        [*({"line": r.line, "field": r.field, "reason": r.reason} for r in resp.rejections), *lines.local_rejections],
        key=lambda r: r["line"],
    )
    rejected = resp.rejected + len(lines.local_rejections)
    if total and rejected == total and all(r["reason"].startswith("not valid JSON") for r in rejections):
        # Not one line is JSON: the body as a whole is not what this endpoint takes.
        first_reason = rejections[0]["reason"] if rejections else "not valid JSON"
        return _invalid(f"neither a JSON array nor JSONL: line {rejections[0]['line']}: {first_reason}")
    return ImportSummaryPublic(imported=resp.imported, updated=resp.updated, rejected=rejected,
                               rejections=[RejectionPublic(**r) for r in rejections])
