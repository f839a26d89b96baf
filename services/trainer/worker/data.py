"""Training records: from the exporter over gRPC (the job's vertical, train split) or a JSONL ``dataset_path``.

Only ``json`` and ``grpc`` are needed here, so bad data or an unreachable exporter fails the job in about a
second, before torch/transformers are even imported. Records are plain dicts in the exporter's SFT format:
``{"instruction", "input", "output", "metadata": {"debate_id", "consensus_confidence", "rounds", "vertical"}}``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from services.trainer.artifacts import JobLayout
from services.trainer.spec import resolve_dataset_path
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError

TRAIN_FILE = JobLayout.TRAIN_FILE
EXPORT_CALL_TIMEOUT_S = 600.0  # a whole export stream; a hung exporter must not hang the job forever
MAX_REPORTED_ERRORS = 5


def load_training_records(job: JobConfig, events: EventSink) -> tuple[list[dict], str]:
    """The job's SFT records and where they came from (a phrase for the event log).

    A resumed job reuses its ``data/train.jsonl``, so it continues on exactly the data it started with.
    """
    saved = job.data_dir / TRAIN_FILE
    if job.resume and saved.is_file():
        return read_sft_jsonl(saved, label=f"{saved}"), f"{saved.relative_to(job.job_dir)} (resumed job)"
    if job.spec.method != "sft":
        raise WorkerError(f"training_config.method {job.spec.method!r}: only 'sft' training is implemented "
                          "by this worker so far")
    if job.spec.dataset_path:
        try:
            path = resolve_dataset_path(job.spec.dataset_path, job.data_root)
        except ValueError as exc:
            raise WorkerError(f"training_config.dataset_path {job.spec.dataset_path!r} {exc}") from None
        if not path.is_file():
            raise WorkerError(f"training_config.dataset_path: no such file: {path}")
        records = read_sft_jsonl(path, label=f"dataset_path {job.spec.dataset_path}")
        if not records:
            raise WorkerError(f"no training data: dataset_path {job.spec.dataset_path} holds no records")
        return records, f"dataset_path {job.spec.dataset_path}"
    records = fetch_sft_from_exporter(job, events)
    return records, f"the exporter at {job.exporter_address}"


# -- validation -----------------------------------------------------------------------------------------------

def check_sft_record(obj) -> tuple[dict | None, str]:
    """(the normalised record, "") or (None, the reason it is not a usable SFT record)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for key in ("instruction", "input", "output"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            return None, f"field {key!r} must be a string"
    output = obj.get("output") or ""
    if not output.strip():
        return None, "missing or empty field 'output' (the answer to train on)"
    instruction, inp = obj.get("instruction") or "", obj.get("input") or ""
    if not (instruction.strip() or inp.strip()):
        return None, "needs a non-empty 'instruction' or 'input' (the prompt)"
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        return None, "field 'metadata' must be an object"
    return {"instruction": instruction, "input": inp, "output": output, "metadata": metadata}, ""


def read_sft_jsonl(path: Path, label: str) -> list[dict]:
    """Reads and validates a JSONL file of SFT records; every bad line is reported (up to a few)."""
    records, errors, bad = [], [], 0
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise WorkerError(f"{label}: cannot read {path}: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                record, reason = None, f"invalid JSON ({exc.msg} at column {exc.colno})"
            else:
                record, reason = check_sft_record(obj)
            if record is None:
                bad += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append(f"line {lineno}: {reason}")
            else:
                records.append(record)
    if bad:
        more = f" (and {bad - len(errors)} more)" if bad > len(errors) else ""
        raise WorkerError(f"{label}: {bad} bad record{'s' if bad > 1 else ''}: " + "; ".join(errors) + more)
    return records


def count_debates(records: list[dict]) -> int:
    """Distinct debates the records come from (records without a debate id are not counted)."""
    return len({r["metadata"].get("debate_id") for r in records if r.get("metadata", {}).get("debate_id")})


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Writes the records atomically (temp file + rename), so a half-written file is never read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = JobLayout.temporary(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# -- the exporter ---------------------------------------------------------------------------------------------

def fetch_sft_from_exporter(job: JobConfig, events: EventSink) -> list[dict]:
    """The SFT export of the job's vertical (train split, ``min_confidence`` of the spec) over gRPC."""
    from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc

    request = exporter_pb2.ExportSFTRequest(
        min_confidence=job.spec.min_confidence, vertical=job.vertical, split=exporter_pb2.SPLIT_TRAIN)

    def convert(r) -> dict:
        m = r.metadata
        return {"instruction": r.instruction, "input": r.input, "output": r.output,
                "metadata": {"debate_id": m.debate_id, "consensus_confidence": m.consensus_confidence,
                             "rounds": m.rounds, "vertical": m.vertical}}

    raw = _export(job, events, "SFT", lambda stub: stub.ExportSFT, request, convert, exporter_pb2_grpc)
    records = []
    for i, obj in enumerate(raw):
        record, reason = check_sft_record(obj)
        if record is None:
            # The exporter validates its records; one that is still unusable is skipped, not fatal.
            events.warning(f"skipped exported SFT record {i + 1} "
                           f"(debate {obj['metadata'].get('debate_id') or '?'}): {reason}")
        else:
            records.append(record)
    if not records:
        raise WorkerError(
            f"no training data: the exporter's SFT export (vertical {job.vertical or 'all'}, train split, "
            f"min_confidence {job.spec.min_confidence:g}) has no records; import debates for this vertical "
            "or lower training_config.min_confidence")
    return records


def _export(job: JobConfig, events: EventSink, kind: str, method: Callable, request, convert: Callable,
            pb2_grpc) -> list[dict]:
    """Runs one server-streaming export, retrying while the exporter is unreachable (bounded time)."""
    import grpc

    deadline = time.monotonic() + job.exporter_retry_seconds
    delay, attempt, warned = 0.25, 0, False
    # The trainer's api_token (from the environment, never job.json: that file is a downloadable artifact).
    token = os.environ.get("ARAGORA_EXPORTER_TOKEN")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    # Reconnect attempts at most 2 s apart (gRPC's default grows to 120 s), so an exporter that comes back
    # within the retry window is found at once.
    with grpc.insecure_channel(job.exporter_address, options=[("grpc.max_reconnect_backoff_ms", 2000)]) as channel:
        stub = pb2_grpc.ExporterServiceStub(channel)
        while True:
            attempt += 1
            try:
                out = []
                for response in method(stub)(request, timeout=EXPORT_CALL_TIMEOUT_S, metadata=metadata):
                    out.extend(convert(r) for r in response.records)
                return out
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise WorkerError(f"the exporter at {job.exporter_address} refused the {kind} export "
                                      f"({code.name}): {details}") from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerError(f"exporter unavailable at {job.exporter_address}: {details} "
                                      f"(tried {attempt} times over {job.exporter_retry_seconds:g} s)") from None
                if not warned:
                    events.warning(f"exporter unavailable at {job.exporter_address} ({details}); "
                                   f"retrying for up to {job.exporter_retry_seconds:g} s")
                    warned = True
                time.sleep(min(delay, left))
                delay = min(delay * 2, 4.0)
