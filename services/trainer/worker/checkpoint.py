"""Checkpoints and the final adapter.

``checkpoints/checkpoint-<step>/`` holds everything needed to continue exactly where training stopped:
``adapter_model.safetensors`` + ``adapter_config.json`` (peft), ``optimizer.pt``, ``scheduler.pt``,
``rng_state.pt`` (torch CPU/CUDA and Python RNG at the end of that step) and ``trainer_state.json`` (the step,
examples and tokens seen, the per-step losses). Each is written into a hidden temporary folder that is renamed
into place, so a crash mid-write never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import shutil
from pathlib import Path

from services.trainer.artifacts import JobLayout, newest_checkpoint
from services.trainer.worker.job import WorkerError

STATE_FILE = JobLayout.CHECKPOINT_STATE_FILE
_OS_ERROR_RE = re.compile(r"os error (\d+)")
_WHY = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


def write_failure(exc: BaseException, what: str, folder: Path) -> WorkerError:
    """A failed write as the job's reason: what could not be written, where, and why (disk full, file size
    limit, read-only, ...), from the OSError or from the errno a library quoted in its message."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None and (m := _OS_ERROR_RE.search(str(exc))):
        code = int(m.group(1))  # safetensors: "I/O error: File too large (os error 27)"
    if code == errno.EFBIG:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        why = "file too large" + (f" (this worker may write files of at most {soft} bytes)"
                                  if soft != resource.RLIM_INFINITY else "")
    elif code is not None:
        why = _WHY.get(code) or os.strerror(code)
    else:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return WorkerError(f"cannot write {what} in {folder}: {why}")


def _torch_save(obj, path: Path) -> None:
    """``torch.save`` through an ordinary file write: on a full disk or past a file size limit torch's own
    writer only says "unexpected pos", while this raises the OSError that names the cause."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with open(path, "wb") as fh:
        fh.write(buffer.getbuffer())


def capture_rng() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_adapter(model, folder: Path, base_model_id: str) -> None:
    config = model.peft_config["default"]
    local_path = config.base_model_name_or_path
    # The id, not this server's folder, so the adapter is usable wherever the base model lives.
    config.base_model_name_or_path = base_model_id or local_path
    try:
        # save_embedding_layers=False: the embeddings are never trained here, and the check for a resized
        # vocabulary would look the base model up by id (a hub lookup on a server without one).
        model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)
    finally:
        config.base_model_name_or_path = local_path


def _atomic_dir(target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = JobLayout.temporary(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.rename(tmp, target)


def save_checkpoint(checkpoints_dir: Path, step: int, model, optimizer, scheduler, state: dict, rng: dict,
                    base_model_id: str) -> Path:
    """Writes ``checkpoint-<step>`` and returns its folder."""
    target = checkpoints_dir / JobLayout.checkpoint_name(step)
    try:
        tmp = _atomic_dir(target)
    except OSError as exc:
        raise write_failure(exc, target.name, checkpoints_dir) from exc
    try:
        _save_adapter(model, tmp, base_model_id)
        _torch_save(optimizer.state_dict(), tmp / "optimizer.pt")
        _torch_save(scheduler.state_dict(), tmp / "scheduler.pt")
        _torch_save(rng, tmp / "rng_state.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        _publish(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception):
            raise write_failure(exc, target.name, checkpoints_dir) from exc
        raise
    return target


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, if any (``JobLayout`` names and completes them)."""
    found = newest_checkpoint(checkpoints_dir)
    return found[1] if found else None


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> tuple[dict, dict]:
    """Restores the adapter weights, optimizer and scheduler in place; returns (trainer state, rng state)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(folder / "adapter_model.safetensors", device=str(next(model.parameters()).device))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint {folder.name} does not match the model: unexpected {unexpected[:3]}")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    rng = torch.load(folder / "rng_state.pt", weights_only=False)  # our own file: Python's RNG tuple
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    return state, rng


def load_adapter_weights(folder: Path, model) -> None:
    """Puts a checkpoint's adapter weights into ``model`` (the best checkpoint becomes the adapter)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        weights = load_file(folder / "adapter_model.safetensors", device=str(next(model.parameters()).device))
        result = set_peft_model_state_dict(model, weights)
    except Exception as exc:
        raise WorkerError(f"cannot load the best checkpoint {folder.name}: {exc}") from None
    if getattr(result, "unexpected_keys", None):
        raise WorkerError(f"checkpoint {folder.name} does not match the model: unexpected "
                          f"{result.unexpected_keys[:3]}")


def load_initial_weights(folder: Path, model) -> int:
    """Warm start: sets the LoRA weights of ``model`` (a fresh PeftModel) to those saved in ``folder`` (an
    earlier job's ``adapter/`` or checkpoint). Every LoRA weight of the model must be found there with the same
    shape. Returns the number of tensors loaded."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file():
        raise WorkerError(f"warm start: {path} is missing (was the earlier job's folder removed?)")
    weights = load_file(path, device=str(next(model.parameters()).device))
    expected = get_peft_model_state_dict(model)
    missing = sorted(set(expected) - set(weights))
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        what = (f"missing {missing[:3]}" if missing else
                f"shape of {wrong[0]}: {tuple(weights[wrong[0]].shape)} vs {tuple(expected[wrong[0]].shape)}")
        raise WorkerError(f"warm start: the weights in {folder} do not fit this job's adapter ({what})")
    set_peft_model_state_dict(model, weights)
    return len(expected)


def save_final_adapter(adapter_dir: Path, model, tokenizer, base_model_id: str) -> Path:
    """``adapter/``: adapter_config.json, adapter_model.safetensors and the tokenizer files (atomic)."""
    try:
        tmp = _atomic_dir(adapter_dir)
    except OSError as exc:
        raise write_failure(exc, adapter_dir.name, adapter_dir.parent) from exc
    try:
        _save_adapter(model, tmp, base_model_id)
        tokenizer.save_pretrained(tmp)
        _publish(tmp, adapter_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception):
            raise write_failure(exc, adapter_dir.name, adapter_dir.parent) from exc
        raise
    return adapter_dir
