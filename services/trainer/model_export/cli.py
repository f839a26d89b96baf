"""``python -m services.trainer export JOB_ID KIND``: start an export of a completed job and draw its progress.

KIND is ``merged``, ``gguf_f16`` or ``gguf_q8_0``. ``--attach`` follows an export already running (or shows how
the last one ended) instead of starting one; ``--cancel`` cancels a running export. Leaving with Ctrl-C leaves
the export running. Exit status: 0 when the export completed (its files are printed), 1 when it failed or was
cancelled, 2 when it could not be started or followed (the trainer's reason is printed).
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc

from aragora.training.v1 import model_export_pb2 as pb
from aragora.training.v1 import model_export_pb2_grpc
from services.common.grpc_server import CHANNEL_OPTIONS, client_interceptors
from services.common.tls import TlsConfigError, TlsFiles, aio_channel

KINDS = {"merged": pb.EXPORT_KIND_MERGED, "gguf_f16": pb.EXPORT_KIND_GGUF_F16, "gguf_q8_0": pb.EXPORT_KIND_GGUF_Q8_0}
STATUS = {v: k.removeprefix("EXPORT_STATUS_").lower() for k, v in pb.ExportStatus.items()}


async def export(address: str, job_id: str, kind: str, attach: bool = False, cancel: bool = False, file=None,
                 token: str | None = None, tls: TlsFiles | None = None) -> int:
    from tqdm import tqdm

    file = file or sys.stderr
    async with aio_channel(address, tls, CHANNEL_OPTIONS, client_interceptors(token)) as channel:
        stub = model_export_pb2_grpc.ModelExportServiceStub(channel)
        try:
            if cancel:
                done = (await stub.CancelExport(pb.CancelExportRequest(job_id=job_id, kind=KINDS[kind]))).export
                print(f"{job_id} {kind}: {STATUS[done.status]}", file=file)
                return 0
            if not attach:
                await stub.StartExport(pb.StartExportRequest(job_id=job_id, kind=KINDS[kind]))
            bar = tqdm(total=100, unit="%", desc=f"{kind} [running]", file=file, dynamic_ncols=True,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
            final = None
            try:
                async for item in stub.WatchExport(pb.WatchExportRequest(job_id=job_id, kind=KINDS[kind])):
                    if item.WhichOneof("item") == "snapshot":
                        final = item.snapshot
                        bar.n = round(item.snapshot.progress * 100)
                        bar.refresh()
                        continue
                    e = item.event
                    bar.n = round(e.progress * 100)
                    bar.set_postfix_str(e.message[:60], refresh=True)
                    if e.phase == "warning":
                        bar.write(f"warning: {e.message}", file=file)
                    if e.phase not in ("status", "warning"):
                        bar.set_description(f"{kind} [{e.phase}]")
            finally:
                bar.close()
            listing = await stub.ListExports(pb.ListExportsRequest(job_id=job_id))
            final = next((x for x in listing.exports if x.kind == KINDS[kind]), final)
        except grpc.aio.AioRpcError as exc:
            print(f"cannot export {job_id} as {kind}: {exc.details()}", file=file)
            return 2
    status = STATUS[final.status]
    print(f"{job_id} {kind}: {status}" + (f" ({final.error})" if final.error else ""), file=file)
    for name in final.files:
        print(name)
    if final.checks_json and status == "completed":
        print(json.dumps(json.loads(final.checks_json)), file=file)
    return 0 if status == "completed" else 1


def main(job_id: str, kind: str, address: str, attach: bool = False, cancel: bool = False) -> int:
    try:
        from services.trainer.config import TrainerSettings

        settings = TrainerSettings()
        return asyncio.run(export(address, job_id, kind, attach, cancel, token=settings.api_token,
                                  tls=TlsFiles.from_settings(settings)))
    except TlsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # the export goes on; `--attach` follows it again
