"""Data sources: every record a job reads, from the exporter over gRPC, a JSONL ``dataset_path``, or the job's
own ``data/`` folder (a resumed job), validated, and written back to ``data/``.

Two kinds of record (``RecordKind``): SFT records ``{"instruction", "input", "output", "metadata":
{"debate_id", "consensus_confidence", "rounds", "vertical"}}`` and DPO pairs ``{"prompt", "chosen", "rejected",
"metadata": {"debate_id", "confidence_diff", "vertical"}}`` (the exporter's formats). A training method names the
kind it trains on; the evaluation reads both kinds from the held-out split.

Only ``json`` and ``grpc`` are needed here, so bad data or an unreachable exporter fails the job in about a
second, before torch/transformers are even imported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.trainer.artifacts import JobLayout
from services.trainer.spec import resolve_dataset_path
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError

TRAIN_FILE = JobLayout.TRAIN_FILE
HELDOUT_SFT_FILE = JobLayout.HELDOUT_SFT_FILE
HELDOUT_DPO_FILE = JobLayout.HELDOUT_DPO_FILE
EXPORT_CALL_TIMEOUT_S = 600.0  # a whole export stream; a hung exporter must not hang the job forever
MAX_REPORTED_ERRORS = 5


# -- validation ------------------------------------------------------------------------------------------------

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


def check_dpo_record(obj) -> tuple[dict | None, str]:
    """(the normalised pair, "") or (None, the reason it is not a usable DPO pair)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for key in ("prompt", "chosen", "rejected"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return None, f"field {key!r} must be a string"
        if not (value or "").strip():
            return None, f"missing or empty field {key!r}"
    if obj["chosen"].strip() == obj["rejected"].strip():
        return None, "'chosen' and 'rejected' are the same text (no preference to learn)"
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        return None, "field 'metadata' must be an object"
    return {"prompt": obj["prompt"], "chosen": obj["chosen"], "rejected": obj["rejected"], "metadata": metadata}, ""


# -- the kinds of record ---------------------------------------------------------------------------------------

def _sft_request(pb2, job: JobConfig, split: int):
    return pb2.ExportSFTRequest(min_confidence=job.spec.min_confidence, vertical=job.vertical, split=split)


def _sft_convert(r) -> dict:
    m = r.metadata
    return {"instruction": r.instruction, "input": r.input, "output": r.output,
            "metadata": {"debate_id": m.debate_id, "consensus_confidence": m.consensus_confidence,
                         "rounds": m.rounds, "vertical": m.vertical}}


def _dpo_request(pb2, job: JobConfig, split: int):
    return pb2.ExportDPORequest(vertical=job.vertical, split=split, min_confidence_diff=job.spec.min_confidence_diff)


def _dpo_convert(r) -> dict:
    m = r.metadata
    return {"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected,
            "metadata": {"debate_id": m.debate_id, "confidence_diff": m.confidence_diff, "vertical": m.vertical}}


@dataclass(frozen=True)
class RecordKind:
    """One kind of record: how it is checked, named in messages, and exported."""

    name: str
    """"SFT" / "DPO": the export's name in messages."""
    one: str
    """One record, as messages name it ("SFT record")."""
    many: str
    """Records, as the log names them ("SFT records")."""
    bad: str
    """What "N bad ..." counts in a file ("record" -> "3 bad records")."""
    none: str
    """What an empty file holds none of ("holds no records")."""
    check: Callable[[object], tuple[dict | None, str]]
    rpc: str
    """The exporter's server-streaming method."""
    request: Callable
    """``request(exporter_pb2, job, split) -> the export request``."""
    convert: Callable[[object], dict]
    """A proto record -> the record dict."""
    threshold: str
    """The spec field that filters the export (named in the "no data" message)."""
    label_suffix: str = ""
    """Added to "dataset_path X" in a bad-file message."""

    def empty_export(self, job: JobConfig) -> str:
        value = getattr(job.spec, self.threshold)
        return (f"no training data: the exporter's {self.name} export (vertical {job.vertical or 'all'}, train "
                f"split, {self.threshold} {value:g}) has no {self.none.split()[-1]}; "
                f"import debates for this vertical or lower training_config.{self.threshold}")


SFT_RECORDS = RecordKind("SFT", "SFT record", "SFT records", "record", "records", check_sft_record, "ExportSFT",
                         _sft_request, _sft_convert, "min_confidence")
DPO_PAIRS = RecordKind("DPO", "DPO pair", "DPO pairs", "DPO pair", "DPO pairs", check_dpo_record, "ExportDPO",
                       _dpo_request, _dpo_convert, "min_confidence_diff", label_suffix=" (method dpo)")


# -- files -----------------------------------------------------------------------------------------------------

def read_jsonl(path: Path, kind: RecordKind, label: str) -> list[dict]:
    """Reads and validates a JSONL file of ``kind`` records; every bad line is reported (up to a few)."""
    records, errors, bad = [], [], 0
    try:
        fh = open(path, "rb")  # decoded line by line: a line that is not UTF-8 is a bad line, not a crash
    except OSError as exc:
        raise WorkerError(f"{label}: cannot read the file: {exc.strerror}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            checked = _check_line(raw, kind)
            if checked is None:
                continue
            record, reason = checked
            if record is None:
                bad += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append(f"line {lineno}: {reason}")
            else:
                records.append(record)
    if bad:
        more = f" (and {bad - len(errors)} more)" if bad > len(errors) else ""
        raise WorkerError(f"{label}: {bad} bad {kind.bad}{'s' if bad > 1 else ''}: " + "; ".join(errors) + more)
    return records


def _check_line(raw: bytes, kind: RecordKind) -> tuple[dict | None, str] | None:
    """A line's ``(record, reason)`` as ``kind.check`` gives it (record None: the reason it is bad); None for a
    blank line. A line that is not UTF-8 or not JSON is bad, not a crash."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start + 1} of the line)"
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    return kind.check(obj)


def _in_job(job: JobConfig, path: Path) -> str:
    """A file of the job's folder as a user-facing message names it (no server path)."""
    return f"the job's {path.relative_to(job.job_dir)}"


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Writes the records atomically (temp file + rename), so a half-written file is never read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = JobLayout.temporary(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def count_debates(records: list[dict]) -> int:
    """Distinct debates the records come from (records without a debate id are not counted)."""
    return len({r["metadata"].get("debate_id") for r in records if r.get("metadata", {}).get("debate_id")})


# -- training data ---------------------------------------------------------------------------------------------

def load_training_records(job: JobConfig, events: EventSink, kind: RecordKind) -> tuple[list[dict], str]:
    """The job's training records of ``kind`` and where they came from (a phrase for the event log).

    A resumed job reuses its ``data/train.jsonl``, so it continues on exactly the data it started with; else
    the ``dataset_path`` file, else the exporter's export of the job's vertical, train split.
    """
    saved = job.data_dir / TRAIN_FILE
    if job.resume and saved.is_file():
        return read_jsonl(saved, kind, label=_in_job(job, saved)), f"{saved.relative_to(job.job_dir)} (resumed job)"
    spec = job.spec
    if spec.dataset_path:
        try:
            path = resolve_dataset_path(spec.dataset_path, job.data_root)
        except ValueError as exc:
            raise WorkerError(f"training_config.dataset_path {spec.dataset_path!r} {exc}") from None
        if not path.is_file():
            raise WorkerError(f"training_config.dataset_path: no such file in the data root: {spec.dataset_path}")
        records = read_jsonl(path, kind, label=f"dataset_path {spec.dataset_path}{kind.label_suffix}")
        if not records:
            raise WorkerError(f"no training data: dataset_path {spec.dataset_path} holds no {kind.none}")
        return records, f"dataset_path {spec.dataset_path}"
    records = fetch(job, events, kind, "train")
    if not records:
        raise WorkerError(kind.empty_export(job))
    return records, f"the exporter at {job.exporter_address}"


# -- the exporter ----------------------------------------------------------------------------------------------

def fetch(job: JobConfig, events: EventSink, kind: RecordKind, split: str, retry: bool = True) -> list[dict]:
    """The exporter's ``kind`` records of the job's vertical and ``split`` ("train" / "heldout") over gRPC,
    filtered by the spec's threshold; a record that fails validation is skipped with a warning.

    ``retry``: keep retrying an unreachable exporter for the job's ``exporter_retry_seconds``; without it one
    attempt decides.
    """
    from aragora.training.v1 import exporter_pb2

    request = kind.request(exporter_pb2, job,
                           exporter_pb2.SPLIT_HELDOUT if split == "heldout" else exporter_pb2.SPLIT_TRAIN)
    raw = _export(job, events, kind, request, retry)
    out = []
    for i, obj in enumerate(raw):
        record, reason = kind.check(obj)
        if record is None:
            # The exporter validates its records; one that is still unusable is skipped, not fatal.
            events.warning(f"skipped exported {kind.one} {i + 1} "
                           f"(debate {obj['metadata'].get('debate_id') or '?'}): {reason}")
        else:
            out.append(record)
    return out


def _export(job: JobConfig, events: EventSink, kind: RecordKind, request, retry: bool) -> list[dict]:
    """Runs one server-streaming export, retrying while the exporter is unreachable (bounded time)."""
    import grpc

    from aragora.training.v1 import exporter_pb2_grpc
    from services.common.tls import TlsConfigError, sync_channel

    budget = job.exporter_retry_seconds if retry else 0.0
    deadline = time.monotonic() + budget
    delay, attempt, warned = 0.25, 0, False
    # The trainer's api_token (from the environment, never job.json: that file is a downloadable artifact).
    token = os.environ.get("ARAGORA_EXPORTER_TOKEN")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    # Reconnect attempts at most 2 s apart (gRPC's default grows to 120 s), so an exporter that comes back
    # within the retry window is found at once.
    # TLS (mutual TLS with the client certificate) when job.json names the files.
    try:
        channel = sync_channel(job.exporter_address, job.exporter_tls, [("grpc.max_reconnect_backoff_ms", 2000)])
    except TlsConfigError as exc:
        raise WorkerError(f"cannot reach the exporter at {job.exporter_address} over TLS: job.json's {exc}") from None
    with channel:
        call = getattr(exporter_pb2_grpc.ExporterServiceStub(channel), kind.rpc)
        while True:
            attempt += 1
            try:
                out = []
                for response in call(request, timeout=EXPORT_CALL_TIMEOUT_S, metadata=metadata):
                    out.extend(kind.convert(r) for r in response.records)
                return out
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise WorkerError(f"the exporter at {job.exporter_address} refused the {kind.name} export "
                                      f"({code.name}): {details}") from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerError(f"exporter unavailable at {job.exporter_address}: {details} "
                                      f"(tried {attempt} times over {budget:g} s)") from None
                if not warned:
                    events.warning(f"exporter unavailable at {job.exporter_address} ({details}); "
                                   f"retrying for up to {budget:g} s")
                    warned = True
                time.sleep(min(delay, left))
                delay = min(delay * 2, 4.0)


# -- the held-out split (the evaluation after training) --------------------------------------------------------

@dataclass
class HeldOut:
    sft: list[dict] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)
    available_sft: int = 0
    available_pairs: int = 0
    source: str = ""
    skipped: str = ""
    """Why there is nothing to evaluate (empty when there is)."""


def balanced_take(records: list[dict], cap: int) -> list[dict]:
    """At most ``cap`` records, taken round-robin across verticals in their given (stable) order."""
    if cap <= 0:
        return []
    if len(records) <= cap:
        return list(records)
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str((r.get("metadata") or {}).get("vertical") or ""), []).append(r)
    queues = [groups[k] for k in sorted(groups)]
    out, i = [], 0
    while len(out) < cap:
        progressed = False
        for q in queues:
            if i < len(q) and len(out) < cap:
                out.append(q[i])
                progressed = True
        if not progressed:
            break
        i += 1
    return out


def load_heldout(job: JobConfig, events: EventSink, settings) -> HeldOut:
    """The held-out SFT records and DPO pairs to evaluate on (capped by ``settings``, an
    ``evaluate.EvalSettings``), saved under ``data/``.

    A resumed job reads back what it saved. A job trained on exporter data retries an unreachable exporter
    like the training fetch; a ``dataset_path`` job makes one attempt, and evaluation is skipped with a warning
    when the exporter cannot be reached (the job still completes, with no evaluation figures).
    """
    if not settings.enabled:
        return HeldOut(skipped="evaluation disabled (TRAINER_EVAL_ENABLED=false)")
    if settings.max_sft_records <= 0 and settings.max_pairs <= 0:
        return HeldOut(skipped="evaluation sets capped at 0 (TRAINER_EVAL_MAX_SFT_RECORDS, TRAINER_EVAL_MAX_PAIRS)")
    sft_file, dpo_file = job.data_dir / HELDOUT_SFT_FILE, job.data_dir / HELDOUT_DPO_FILE
    if job.resume and sft_file.is_file() and dpo_file.is_file():
        sft = read_jsonl(sft_file, SFT_RECORDS, label=_in_job(job, sft_file))
        pairs = read_jsonl(dpo_file, DPO_PAIRS, label=_in_job(job, dpo_file))
        return HeldOut(sft, pairs, len(sft), len(pairs), source="data/ (resumed job)")
    retry = not job.spec.dataset_path
    try:
        sft_all = fetch(job, events, SFT_RECORDS, "heldout", retry) if settings.max_sft_records > 0 else []
        pairs_all = fetch(job, events, DPO_PAIRS, "heldout", retry) if settings.max_pairs > 0 else []
    except WorkerError as exc:
        if retry:
            raise
        events.warning(f"evaluation skipped: no held-out data ({exc})")
        return HeldOut(skipped=f"no held-out data: {exc}")
    held = HeldOut(balanced_take(sft_all, settings.max_sft_records), balanced_take(pairs_all, settings.max_pairs),
                   len(sft_all), len(pairs_all), source=f"the exporter at {job.exporter_address}")
    write_jsonl(sft_file, held.sft)
    write_jsonl(dpo_file, held.pairs)
    if not held.sft and not held.pairs:
        held.skipped = (f"the exporter has no held-out debates for vertical {job.vertical or 'all'} "
                        f"(min_confidence {job.spec.min_confidence:g}, "
                        f"min_confidence_diff {job.spec.min_confidence_diff:g})")
        events.warning(f"evaluation skipped: {held.skipped}")
    return held
