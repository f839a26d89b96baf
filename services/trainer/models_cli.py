"""``python -m services.trainer models pull|list|delete``: the admin's base-model commands.

- ``pull ID``: downloads a model from the model hub into the models folder now, in this process, with a
  progress line (the same resumable, verified, shared download a job does; a job needing it meanwhile waits);
- ``list``: the model folders (and unfinished downloads) with their size on disk;
- ``delete ID``: asks the running trainer to delete it (refused while a running job uses it).

Exit status: 0 on success, 1 when the hub or the trainer refused (the reason is printed), 2 for bad usage.
"""

from __future__ import annotations

import sys

from services.trainer import hub
from services.trainer.config import TrainerSettings


def pull(settings: TrainerSettings, model_id: str, file=None) -> int:
    file = file or sys.stderr
    access = hub.HubAccess.from_settings(settings)
    if access is None:
        print("model hub access is off (set TRAINER_HUB_ENABLED=true)", file=file)
        return 1
    try:
        hub.check_model_id(model_id)
    except Exception as exc:  # InvalidArgument
        print(str(exc), file=file)
        return 2

    def report(p: hub.Progress) -> None:
        print(p.describe() if p.phase != "planning" else f"asking {access.host} for {p.model}'s files",
              file=file, flush=True)

    try:
        folder = hub.ensure_model(model_id, settings.models_dir, access, report)
    except hub.HubError as exc:
        print(f"pull failed ({exc.kind}): {exc.message}", file=file)
        return 1
    print(f"{model_id}: ready in the models folder ({folder.name})", file=file)
    return 0


def list_models(settings: TrainerSettings, file=None) -> int:
    file = file or sys.stdout
    models = hub.local_models(settings.models_dir)
    if not models:
        print("no models in the models folder", file=file)
    for m in models:
        extra = f" of {hub.human_bytes(m.bytes_total)}" if m.source == "partial" else ""
        print(f"{m.id}\t{hub.human_bytes(m.size_bytes)}{extra}\t{m.files} files\t{m.source}"
              + (f"\t{m.revision[:12]}" if m.revision else ""), file=file)
    return 0


def delete(settings: TrainerSettings, model_id: str, address: str, file=None) -> int:
    import grpc

    from aragora.training.v1 import trainer_pb2 as pb
    from aragora.training.v1 import trainer_pb2_grpc
    from services.common.grpc_server import CHANNEL_OPTIONS
    from services.common.tls import TlsConfigError, TlsFiles, sync_channel

    file = file or sys.stderr
    metadata = [("authorization", f"Bearer {settings.api_token}")] if settings.api_token else None
    try:
        channel = sync_channel(address, TlsFiles.from_settings(settings), CHANNEL_OPTIONS)
    except TlsConfigError as exc:
        print(f"delete failed: {exc}", file=file)
        return 1
    with channel:
        try:
            r = trainer_pb2_grpc.TrainerServiceStub(channel).DeleteLocalModel(
                pb.DeleteLocalModelRequest(model_id=model_id), timeout=60, metadata=metadata)
        except grpc.RpcError as exc:
            print(f"delete failed: {exc.details()}", file=file)
            return 1
    print(f"{model_id}: deleted ({hub.human_bytes(r.freed_bytes)} freed)", file=file)
    return 0
