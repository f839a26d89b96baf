"""The download itself (services/trainer/hub.py) with the real huggingface_hub client against the loopback hub:
the plan, progress, only the needed files, checksums, failures by kind, one download shared, resume."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from services.trainer import hub
from tests.hub.conftest import ENCODER, GATED, MODEL, TOKEN

NEEDED = {"config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
          "tokenizer.json", "tokenizer_config.json"}


def access(fake_hub, **kw) -> hub.HubAccess:
    return hub.HubAccess(endpoint=fake_hub.endpoint, **kw)


def test_plan_lists_the_needed_files_with_sizes_and_checksums(fake_hub, hub_repos):
    p = hub.plan(MODEL, access(fake_hub))
    names = {f.name for f in p.files}
    assert "model.safetensors" in names and "config.json" in names
    assert "pytorch_model.bin" not in names and not any(n.startswith("original/") for n in names)
    assert "README.md" not in names
    assert p.total_bytes == sum((hub_repos["tiny"] / n).stat().st_size for n in names)
    weights = next(f for f in p.files if f.name == "model.safetensors")
    assert weights.sha256 and len(weights.sha256) == 64
    assert p.config["architectures"] == ["LlamaForCausalLM"]


def test_download_reports_progress_and_fetches_only_what_is_needed(fake_hub, tmp_path):
    fake_hub.rate = 400_000
    seen: list[hub.Progress] = []
    folder = hub.ensure_model(MODEL, tmp_path, access(fake_hub), seen.append)
    assert folder == tmp_path / "org--tiny-llama"
    on_disk = {p.name for p in folder.iterdir()}
    assert on_disk - {hub.MANIFEST} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert "pytorch_model.bin" not in on_disk and "original" not in on_disk and "README.md" not in on_disk
    gets = {p.rsplit("/", 1)[-1] for m, p, _ in fake_hub.requests if m == "GET" and "/resolve/" in p}
    assert "pytorch_model.bin" not in gets and "consolidated.pth" not in gets
    phases = [p.phase for p in seen]
    assert phases[0] == "planning" and phases[-1] == "done"
    done = seen[-1]
    assert done.bytes_done == done.bytes_total > 0 and done.files_done == done.files_total >= 5
    moving = [p for p in seen if p.phase == "downloading" and 0 < p.bytes_done < p.bytes_total]
    assert moving, f"no progress between start and end: {seen}"
    assert any(p.bytes_per_second > 0 and p.eta_seconds is not None for p in moving)
    manifest = json.loads((folder / hub.MANIFEST).read_text())
    assert manifest["id"] == MODEL and manifest["revision"] == fake_hub.repos[MODEL].sha
    assert not (tmp_path / hub.DOWNLOADS / "org--tiny-llama").exists()
    # Already there: nothing more is asked of the hub.
    before = len(fake_hub.requests)
    assert hub.ensure_model(MODEL, tmp_path, access(fake_hub)) == folder
    assert len(fake_hub.requests) == before
    listed = {m.id: m for m in hub.local_models(tmp_path)}
    assert listed[MODEL].source == "hub" and listed[MODEL].size_bytes > manifest["size_bytes"] - 1


def test_unknown_id_is_not_found(fake_hub, tmp_path):
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model("org/no-such-model", tmp_path, access(fake_hub))
    assert err.value.kind == "not_found" and "unknown model id 'org/no-such-model'" in err.value.message


def test_gated_model_needs_a_token_and_the_token_is_never_echoed(fake_hub, tmp_path):
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model(GATED, tmp_path, access(fake_hub))
    assert err.value.kind == "gated" and "gated model" in err.value.message and "TRAINER_HUB_TOKEN" in err.value.message
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model(GATED, tmp_path, access(fake_hub, token="hf_wrong"))
    assert err.value.kind == "gated" and "hf_wrong" not in err.value.message
    a = access(fake_hub, token=TOKEN)
    assert TOKEN not in repr(a)
    assert hub.is_complete(hub.ensure_model(GATED, tmp_path, a))


def test_encoder_only_model_is_an_unsupported_architecture(fake_hub, tmp_path):
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model(ENCODER, tmp_path, access(fake_hub))
    assert err.value.kind == "unsupported" and "BertForMaskedLM" in err.value.message
    assert not any("/resolve/" in p and p.endswith("model.safetensors") for _, p, _ in fake_hub.requests)


def test_unreachable_hub(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model(MODEL, tmp_path, hub.HubAccess(endpoint=f"http://127.0.0.1:{port}"))
    assert err.value.kind == "unreachable" and "unreachable" in err.value.message


def test_corrupted_file_fails_the_checksum_and_is_discarded(fake_hub, tmp_path):
    fake_hub.corrupt.add("model.safetensors")
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model(MODEL, tmp_path, access(fake_hub))
    assert err.value.kind == "checksum" and "model.safetensors" in err.value.message
    assert not hub.is_complete(tmp_path / "org--tiny-llama")
    staging = tmp_path / hub.DOWNLOADS / "org--tiny-llama"
    assert not (staging / "model.safetensors").exists() and not (staging / "model.safetensors.part").exists()
    fake_hub.corrupt.clear()  # the hub serves it right again: the retry completes
    assert hub.is_complete(hub.ensure_model(MODEL, tmp_path, access(fake_hub)))


def test_not_enough_disk_fails_before_writing_anything(fake_hub, tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(hub.HubError) as err:
        hub.ensure_model(MODEL, tmp_path, access(fake_hub, keep_free_bytes=free))
    msg = err.value.message
    assert err.value.kind == "disk" and "needs" in msg and "free in the models folder" in msg
    assert not any("/resolve/" in p for _, p, _ in fake_hub.requests if "config.json" not in p)
    assert not (tmp_path / hub.DOWNLOADS / "org--tiny-llama").exists()


def test_a_partial_file_is_resumed_with_a_range_request(fake_hub, tmp_path, hub_repos):
    p = hub.plan(MODEL, access(fake_hub))
    staging = tmp_path / hub.DOWNLOADS / "org--tiny-llama"
    staging.mkdir(parents=True)
    (staging / hub.PLAN_FILE).write_text(p.to_json())
    weights = (hub_repos["tiny"] / "model.safetensors").read_bytes()
    (staging / "model.safetensors.part").write_bytes(weights[:1000])
    seen: list[hub.Progress] = []
    folder = hub.ensure_model(MODEL, tmp_path, access(fake_hub), seen.append)
    assert (folder / "model.safetensors").read_bytes() == weights
    assert fake_hub.ranges("model.safetensors") == ["bytes=1000-"]


def test_concurrent_needs_share_one_download(fake_hub, tmp_path):
    fake_hub.rate = 300_000
    results, errors, reports = [], [], [[], []]

    def need(i):
        try:
            results.append(hub.ensure_model(MODEL, tmp_path, access(fake_hub), reports[i].append))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=need, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert len([1 for m, p, _ in fake_hub.requests if m == "GET" and p.endswith("/model.safetensors")]) == 1
    assert any(r.phase == "waiting" for rs in reports for r in rs)


def test_delete_and_list(fake_hub, tmp_path):
    hub.ensure_model(MODEL, tmp_path, access(fake_hub))
    assert [m.id for m in hub.local_models(tmp_path)] == [MODEL]
    assert hub.delete_model(tmp_path, MODEL) > 0
    assert hub.local_models(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        hub.delete_model(tmp_path, MODEL)
    with pytest.raises(FileNotFoundError):
        hub.delete_model(tmp_path, "../etc")


def test_manifest_and_files_hold_no_token(fake_hub, tmp_path):
    folder = hub.ensure_model(GATED, tmp_path, access(fake_hub, token=TOKEN))
    for f in Path(folder).rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes()


DISK_FULL_SCRIPT = """
import sys
from services.trainer import hub
try:
    hub.ensure_model(sys.argv[1], sys.argv[2], hub.HubAccess(endpoint=sys.argv[3]))
except hub.HubError as exc:
    print(exc.kind, exc.message)
"""


def test_a_real_small_disk_fails_at_once_naming_needed_and_free(fake_hub, tmp_path):
    """The models folder on a 256 KiB tmpfs (a private mount namespace): the model (570 KiB) does not fit."""
    import os
    import subprocess
    import sys

    from tests.faults.test_resources import can_make_mount_namespace

    if not can_make_mount_namespace():
        pytest.skip("needs unshare --mount (root or user namespaces)")
    models = tmp_path / "models"
    models.mkdir()
    mount = f'mount -t tmpfs -o size=256k tmpfs "{models}" && exec "$@"'
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh",
                          sys.executable, "-c", DISK_FULL_SCRIPT, MODEL, str(models), fake_hub.endpoint],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.stdout.startswith("disk not enough free disk"), out.stdout + out.stderr
    assert "needs 583713 bytes" in out.stdout or "needs " in out.stdout
    assert "bytes (256.0 KiB) free" in out.stdout or "free in the models folder" in out.stdout
    assert not any("model.safetensors" in p for _, p, _ in fake_hub.requests)
