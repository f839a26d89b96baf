"""Merge and GGUF export of a really trained tiny job, over real gRPC to a real trainer whose export processes do
the work: the merged model against base + adapter, the GGUF files loaded back by transformers' GGUF loader
against the merged model, progress, cancel, and every refusal."""

from __future__ import annotations

import json

import grpc
import pytest
import torch

from aragora.training.v1 import model_export_pb2 as xpb
from aragora.training.v1 import trainer_pb2 as pb
from tests.model_export.conftest import KINDS, heldout_prompts, run_export
from tests.trainer.conftest import LONG, create_request

pytestmark = pytest.mark.slow

MERGED_TOLERANCE = 1e-4
"""float32 merge: the merged model's logits equal base + adapter's to this (absolute)."""
F16_TOLERANCE = 2e-2
"""f16 GGUF: largest absolute logit difference from the merged model (float16 weights)."""
Q8_TOLERANCE = 2e-1
"""q8_0 GGUF: the same for 8-bit blocks."""


def _logits(model, tokenizer, prompts):
    with torch.no_grad():
        return [model(input_ids=torch.tensor([tokenizer(p).input_ids])).logits[0].float() for p in prompts]


async def test_merged_model_gives_base_plus_adapter_logits(trained_job):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    exports, job, folder = trained_job["exports"], trained_job["job"], trained_job["folder"]
    final, events = await run_export(exports, job.id, "merged")
    assert final.status == xpb.EXPORT_STATUS_COMPLETED, final.error
    assert final.progress == 1.0 and final.finished_at.seconds > 0
    assert {"export/merged/config.json", "export/merged/model.safetensors",
            "export/merged/tokenizer.json"} <= set(final.files)
    assert final.size_bytes == sum((folder / f).stat().st_size for f in final.files)
    checks = json.loads(final.checks_json)["merged"]
    assert checks["max_abs_logit_diff"] <= checks["tolerance"]
    # Progress: numbered from 1 without gaps, never going back, ending in the completed status.
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and any(e.phase == "merge" for e in events)
    assert events[-1].status == xpb.EXPORT_STATUS_COMPLETED and events[-1].phase == "status"

    # Listed among the artifacts (nothing half-written), and a fresh process loads it like any HF model.
    listed = {f.name: f for f in (await trained_job["stub"].GetJobArtifacts(
        pb.GetJobArtifactsRequest(job_id=job.id))).files}
    assert listed["export/merged/model.safetensors"].type == "weights"
    assert not any(".tmp" in name for name in listed)
    merged_model = AutoModelForCausalLM.from_pretrained(folder / "export" / "merged").eval()
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(folder / "export" / "merged")

    base = AutoModelForCausalLM.from_pretrained(trained_job["models_dir"] / "test--tiny-llama")
    with_adapter = PeftModel.from_pretrained(base, folder / "adapter").eval()
    prompts = heldout_prompts(tokenizer)
    expected, got = _logits(with_adapter, tokenizer, prompts), _logits(merged_model, tokenizer, prompts)
    diff = max(float((a - b).abs().max()) for a, b in zip(expected, got))
    print(f"\nmerged: max |logit diff| vs base + adapter {diff:.3g}")
    assert diff <= MERGED_TOLERANCE
    # The adapter changed the model (else the comparison above proves nothing).
    with with_adapter.disable_adapter():
        plain = _logits(with_adapter, tokenizer, prompts)
    assert max(float((a - b).abs().max()) for a, b in zip(plain, got)) > 100 * MERGED_TOLERANCE


@pytest.mark.parametrize("kind", ["gguf_f16", "gguf_q8_0"])
async def test_gguf_loads_back_and_predicts_like_the_merged_model(trained_job, kind):
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    exports, job, folder = trained_job["exports"], trained_job["job"], trained_job["folder"]
    final, events = await run_export(exports, job.id, kind)
    assert final.status == xpb.EXPORT_STATUS_COMPLETED, final.error
    qtype = kind.removeprefix("gguf_")
    assert final.files == [f"export/export-e2e-{qtype}.gguf"]
    assert any(e.phase == kind for e in events)
    path = folder / final.files[0]

    reader = gguf.GGUFReader(path)
    types = {t.name: t.tensor_type for t in reader.tensors}
    want = gguf.GGMLQuantizationType.F16 if qtype == "f16" else gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_q.weight"] == want and types["output.weight"] == want
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32

    merged_dir = folder / "export" / "merged"
    merged_model = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    gguf_tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert gguf_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)

    prompts = heldout_prompts(tokenizer)
    for p in prompts:  # the GGUF's own tokenizer splits text exactly like the original
        assert gguf_tokenizer(p).input_ids == tokenizer(p).input_ids
    ref, out = _logits(merged_model, tokenizer, prompts), _logits(loaded, tokenizer, prompts)
    diff = max(float((a - b).abs().max()) for a, b in zip(ref, out))
    assert diff <= (F16_TOLERANCE if qtype == "f16" else Q8_TOLERANCE)
    # Next-token predictions at every position: all agree where the merged model's top two are further apart
    # than twice the largest logit error (a rounding error cannot swap them), and at least 90% overall.
    agree = clear = clear_agree = total = 0
    for a, b in zip(ref, out):
        top2 = a.topk(2, dim=-1).values
        decided = (top2[:, 0] - top2[:, 1]) > 2 * diff
        same = a.argmax(-1) == b.argmax(-1)
        agree += int(same.sum())
        total += same.numel()
        clear += int(decided.sum())
        clear_agree += int((same & decided).sum())
    print(f"\n{kind}: max |logit diff| {diff:.3g}, next-token agreement {agree}/{total}, "
          f"clear-margin positions {clear_agree}/{clear}")
    assert clear > 0 and clear_agree == clear
    assert agree / total >= 0.9, f"next-token agreement {agree}/{total}"


async def test_cancel_ends_the_process_and_leaves_nothing_half_written(trained_job):
    exports, job, folder = trained_job["exports"], trained_job["job"], trained_job["folder"]
    before = {p.name for p in (folder / "export").iterdir()} if (folder / "export").exists() else set()
    gguf_before = {n for n in before if n.endswith(".gguf")}
    started = (await exports.StartExport(xpb.StartExportRequest(job_id=job.id, kind=KINDS["gguf_q8_0"]))).export
    assert started.status == xpb.EXPORT_STATUS_RUNNING
    pid = trained_job["running"].exports._states[(job.id, "gguf_q8_0")].proc.pid
    cancelled = (await exports.CancelExport(xpb.CancelExportRequest(job_id=job.id, kind=KINDS["gguf_q8_0"]))).export
    assert cancelled.status == xpb.EXPORT_STATUS_CANCELLED and cancelled.files == []
    from tests.trainer.conftest import pid_alive

    assert not pid_alive(pid)
    names = {p.name for p in (folder / "export").iterdir()}
    assert not any(n.endswith(".tmp") for n in names)
    assert {n for n in names if n.endswith(".gguf")} <= gguf_before
    # Its watch replays to the cancelled end, and cancelling again is refused with the status.
    events = [i.event async for i in exports.WatchExport(xpb.WatchExportRequest(job_id=job.id, kind=KINDS["gguf_q8_0"]))
              if i.WhichOneof("item") == "event"]
    assert events[-1].status == xpb.EXPORT_STATUS_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await exports.CancelExport(xpb.CancelExportRequest(job_id=job.id, kind=KINDS["gguf_q8_0"]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "cancelled" in err.value.details()


async def test_refusals_name_the_problem(trained_job):
    stub, exports, job = trained_job["stub"], trained_job["exports"], trained_job["job"]

    async def code_of(coro):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await coro
        return err.value.code(), err.value.details()

    code, details = await code_of(exports.StartExport(xpb.StartExportRequest(job_id="job-nope", kind=1)))
    assert code == grpc.StatusCode.NOT_FOUND and "job-nope" in details
    code, details = await code_of(exports.StartExport(xpb.StartExportRequest(job_id=job.id)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "kind" in details
    code, details = await code_of(exports.StartExport(xpb.StartExportRequest(job_id=job.id, kind=99)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "kind" in details
    queued = (await stub.CreateJob(create_request("export-queued", **LONG))).job
    code, details = await code_of(exports.StartExport(xpb.StartExportRequest(job_id=queued.id, kind=1)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "queued" in details
    code, details = await code_of(exports.CancelExport(xpb.CancelExportRequest(job_id=queued.id, kind=1)))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(exports.ListExports(xpb.ListExportsRequest(job_id="job-nope")))
    assert code == grpc.StatusCode.NOT_FOUND

    # One export at a time per job: the same kind again is ALREADY_EXISTS, another kind FAILED_PRECONDITION.
    await exports.StartExport(xpb.StartExportRequest(job_id=job.id, kind=KINDS["merged"]))
    try:
        code, details = await code_of(exports.StartExport(xpb.StartExportRequest(job_id=job.id, kind=KINDS["merged"])))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "merged" in details
        code, details = await code_of(exports.StartExport(
            xpb.StartExportRequest(job_id=job.id, kind=KINDS["gguf_f16"])))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "merged" in details
    finally:
        await exports.CancelExport(xpb.CancelExportRequest(job_id=job.id, kind=KINDS["merged"]))
