"""Base models from the model hub: plan, check, download (resumable, shared, verified), list and delete.

Everything here uses the real ``huggingface_hub`` client: ``HfApi.model_info(files_metadata=True)`` for the file
list with sizes and checksums, ``hf_hub_url`` + ``http_get`` (with ``resume_size``) for the bytes. The download
runs wherever ``ensure_model`` is called: in a job's worker while the job is ``preparing`` (killed by a cancel,
resumed after a trainer restart), in the trainer service for an admin's pull, or in the CLI.

Layout under the models folder::

    <models_dir>/<id with "/" as "--">/            the finished model (renamed into place when complete)
    <models_dir>/.downloads/<folder>/              files being downloaded: <name>.part grows, then is verified
                                                   and renamed to <name>; plan.json holds the file list
    <models_dir>/.downloads/<folder>.lock          flock: one download per model, whoever needs it waits

A finished folder holds ``.hub.json`` (id, revision, files, sizes, checksums). No token is ever written or
logged; errors name the endpoint's host, never credentials.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
DOWNLOADS = ".downloads"
MANIFEST = ".hub.json"
PLAN_FILE = "plan.json"
PART = ".part"
CONFIG_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "chat_template.json",
)
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
CHUNK_BYTES = 64 * 1024
PROGRESS_EVERY = 1.0
"""Seconds between progress reports while bytes flow."""


class HubError(Exception):
    """A download or hub check that failed; ``kind`` says which (the message names it too):
    ``unreachable``, ``not_found``, ``gated``, ``unsupported``, ``disk``, ``checksum``, ``failed``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class HubAccess:
    """Where the hub is and how to authenticate (the token is never shown: see ``__repr__``)."""

    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = field(default=None, repr=False)
    keep_free_bytes: int = 0
    """Free bytes a download must leave on the models folder's disk."""

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc or self.endpoint

    @classmethod
    def from_settings(cls, settings) -> HubAccess | None:
        """The access the trainer's settings describe; None when hub access is off."""
        if not getattr(settings, "hub_enabled", False):
            return None
        token = settings.hub_token.get_secret_value() if settings.hub_token else None
        return cls(endpoint=(settings.hub_endpoint or DEFAULT_ENDPOINT).rstrip("/"), token=token or None,
                   keep_free_bytes=int(settings.hub_keep_free_bytes or 0))


@dataclass
class HubFile:
    name: str
    size: int
    sha256: str | None = None
    """LFS files: the sha256 of the content."""
    blob_id: str | None = None
    """Other files: the git blob id (sha1 of ``blob <size>\\0<content>``)."""


@dataclass
class HubPlan:
    """What downloading a model means: the revision, the files needed and their total size."""

    model_id: str
    revision: str
    files: list[HubFile]
    config: dict = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        return json.dumps({"model_id": self.model_id, "revision": self.revision, "config": self.config,
                           "files": [asdict(f) for f in self.files]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> HubPlan:
        raw = json.loads(text)
        return cls(model_id=raw["model_id"], revision=raw["revision"], config=raw.get("config") or {},
                   files=[HubFile(**f) for f in raw["files"]])


@dataclass
class Progress:
    """A download's progress, as the job's ``download`` events carry it."""

    model: str
    phase: str
    """``planning``, ``waiting`` (another job or a pull is downloading it), ``downloading``, ``verifying``, ``done``."""
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    file: str = ""

    def describe(self) -> str:
        if self.phase == "done":
            return f"base model {self.model} ready ({self.files_total} files, {human_bytes(self.bytes_total)})"
        if self.phase == "waiting":
            return (f"waiting for the download of {self.model} another job or a pull started "
                    f"({human_bytes(self.bytes_done)} of {human_bytes(self.bytes_total)})")
        eta = f", about {self.eta_seconds:.0f} s left" if self.eta_seconds is not None else ""
        return (f"downloading {self.model}: {human_bytes(self.bytes_done)} of {human_bytes(self.bytes_total)}, "
                f"{self.files_done} of {self.files_total} files, {human_bytes(self.bytes_per_second)}/s{eta}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def folder_name(model_id: str) -> str:
    return model_id.replace("/", "--")


# -- the hub client ----------------------------------------------------------------------------------------------


def _hf(access: HubAccess):
    """The ``huggingface_hub`` module, with offline mode decided by our setting (not by ``HF_HUB_OFFLINE``)."""
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False  # hub access is on (the caller has an access): TRAINER_HUB_ENABLED decides
    # Bytes reach the .part file every CHUNK_BYTES (the client's default, 10 MB, would leave a killed
    # download's .part empty for the first 10 MB and the progress frozen in between).
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
    return huggingface_hub


def _translate(exc: BaseException, model_id: str, access: HubAccess) -> HubError:
    """The client's exception as a ``HubError`` naming which failure it is."""
    from huggingface_hub import errors

    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, errors.GatedRepoError):
        if access.token:
            return HubError("gated", f"{model_id} is a gated model and the hub refused the configured token "
                                     f"(TRAINER_HUB_TOKEN): accept its terms on {access.host} with that account")
        return HubError("gated", f"{model_id} is a gated model: it needs an access token (set TRAINER_HUB_TOKEN "
                                 f"to a token of an account that accepted its terms on {access.host})")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError("not_found", f"unknown model id {model_id!r}: the model hub at {access.host} has no such "
                                     "model (or it is private and the token cannot see it)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError("not_found", f"{model_id}: revision not found on the model hub at {access.host}")
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return HubError("not_found", f"{model_id}: a file of the model is missing on the model hub at {access.host}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubError("unreachable", "model hub access is off (TRAINER_HUB_ENABLED)")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return HubError("failed", f"the model hub at {access.host} answered HTTP {status} for {model_id}")
    # The client's HTTP library (httpx's TransportError: connect errors, timeouts), found by name so this
    # module does not depend on which HTTP library the client bundles.
    transport = any(c.__name__ == "TransportError" for c in type(exc).__mro__)
    if transport or isinstance(exc, (ConnectionError, TimeoutError)):
        return HubError("unreachable", f"model hub unreachable: no network access to {access.host} "
                                       f"({type(exc).__name__})")
    if isinstance(exc, OSError):
        return HubError("failed", f"downloading {model_id} failed: {exc.strerror or exc}")
    return HubError("failed", f"downloading {model_id} failed: {type(exc).__name__}: {str(exc)[:300]}")


def select_files(names: list[str]) -> list[str]:
    """The files a fine-tune needs: the safetensors weights (else the PyTorch ``.bin`` ones, never both), the
    config and the tokenizer; top-level files only (no ``original/``, ``onnx/``, ``.pth`` duplicates)."""
    top = [n for n in names if "/" not in n]
    model_st = [n for n in top if n.startswith("model") and n.endswith(".safetensors")]
    any_st = [n for n in top if n.endswith(".safetensors")]
    if model_st:
        weights = model_st + [n for n in top if n == "model.safetensors.index.json"]
    elif any_st:
        weights = any_st
    else:
        weights = [n for n in top if n.startswith("pytorch_model") and (n.endswith(".bin") or n.endswith(".json"))]
    return sorted(set(weights) | {n for n in top if n in CONFIG_FILES})


def check_architecture(model_id: str, config: dict) -> None:
    """Fails (``unsupported``) unless the config describes a causal language model, which SFT and DPO train."""
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    kind = config.get("model_type") or "unknown type"
    if not archs:
        raise HubError("unsupported", f"unsupported architecture: {model_id}'s config.json names no architecture "
                                      f"({kind}); the trainer needs a causal language model (…ForCausalLM)")
    if not any(a.endswith(CAUSAL_SUFFIXES) for a in archs):
        raise HubError("unsupported", f"unsupported architecture: {model_id} is {', '.join(archs)} ({kind}), not a "
                                      "causal language model (…ForCausalLM); SFT and DPO fine-tune causal models only")


def plan(model_id: str, access: HubAccess, *, timeout: float = 30.0) -> HubPlan:
    """Asks the hub for the model's files (sizes, checksums) and config; checks the architecture."""
    hf = _hf(access)
    try:
        info = hf.HfApi(endpoint=access.endpoint, token=access.token or False).model_info(
            model_id, files_metadata=True, timeout=timeout)
        names = [s.rfilename for s in info.siblings or []]
        wanted = set(select_files(names))
        files = [HubFile(name=s.rfilename, size=int(s.lfs.size if s.lfs else s.size or 0),
                         sha256=s.lfs.sha256 if s.lfs else None, blob_id=None if s.lfs else s.blob_id)
                 for s in info.siblings or [] if s.rfilename in wanted]
        revision = info.sha or "main"
        if "config.json" not in wanted:
            raise HubError("unsupported", f"unsupported model: {model_id} has no config.json (not a transformers "
                                          "model)")
        if not any(f.name.endswith((".safetensors", ".bin")) for f in files):
            raise HubError("unsupported", f"unsupported model: {model_id} has no safetensors or PyTorch weights")
        # config.json itself (small), not the info's summary of it: the sequence limit is only there. For a
        # gated model this is also the access check (GatedRepoError without an accepted token).
        url = hf.hf_hub_url(model_id, "config.json", revision=revision, endpoint=access.endpoint)
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        r = get_session().get(url, headers=build_hf_headers(token=access.token or False), timeout=timeout,
                              follow_redirects=True)
        hf_raise_for_status(r)
        config = r.json()
        if not isinstance(config, dict):
            raise HubError("unsupported", f"unsupported model: {model_id}'s config.json is not a JSON object")
    except Exception as exc:  # the client's errors, translated to the failure they mean
        raise _translate(exc, model_id, access) from None
    check_architecture(model_id, config)
    return HubPlan(model_id=model_id, revision=revision, files=files, config=config)


# -- verification ------------------------------------------------------------------------------------------------


def file_digest(path: Path, f: HubFile) -> tuple[str, str]:
    """(expected, actual) checksums of ``path`` for ``f`` (sha256 for LFS files, the git blob id otherwise)."""
    if f.sha256:
        h = hashlib.sha256()
        expected = f.sha256
    elif f.blob_id:
        h = hashlib.sha1()
        h.update(f"blob {path.stat().st_size}\0".encode())
        expected = f.blob_id
    else:
        return "", ""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return expected, h.hexdigest()


# -- the download ------------------------------------------------------------------------------------------------


def _downloads(models_dir: Path) -> Path:
    return Path(models_dir) / DOWNLOADS


def model_folder(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / folder_name(model_id)


def is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _bytes_in(staging: Path, plan_: HubPlan) -> tuple[int, int]:
    """(bytes, files) already in the staging folder (finished files and ``.part`` files)."""
    done_bytes = done_files = 0
    for f in plan_.files:
        final, part = staging / f.name, staging / (f.name + PART)
        if final.is_file():
            done_bytes += f.size
            done_files += 1
        elif part.is_file():
            done_bytes += min(f.size, part.stat().st_size)
    return done_bytes, done_files


class _Reporter:
    """Samples the staging folder while bytes flow and reports ``Progress`` at most every ``PROGRESS_EVERY`` s."""

    def __init__(self, plan_: HubPlan, staging: Path, report: Callable[[Progress], None]) -> None:
        self.plan, self.staging, self.report = plan_, staging, report
        self.start_bytes, _ = _bytes_in(staging, plan_)
        self.started = time.monotonic()
        self.file = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)

    def snapshot(self, phase: str = "downloading") -> Progress:
        done, files = _bytes_in(self.staging, self.plan)
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = max(0.0, (done - self.start_bytes) / elapsed)
        left = self.plan.total_bytes - done
        return Progress(model=self.plan.model_id, phase=phase, files_done=files, files_total=len(self.plan.files),
                        bytes_done=done, bytes_total=self.plan.total_bytes, bytes_per_second=round(rate, 1),
                        eta_seconds=round(left / rate, 1) if rate > 0 else None, file=self.file)

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY):
            self.report(self.snapshot())

    def __enter__(self) -> _Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _download_file(hf, access: HubAccess, plan_: HubPlan, f: HubFile, staging: Path) -> None:
    """Downloads one file into ``<name>.part`` (continuing what is there), verifies it and renames it."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    final, part = staging / f.name, staging / (f.name + PART)
    if final.is_file():
        return
    have = part.stat().st_size if part.is_file() else 0
    if have > f.size:
        part.unlink()
        have = 0
    url = hf.hf_hub_url(plan_.model_id, f.name, revision=plan_.revision, endpoint=access.endpoint)
    if have < f.size or f.size == 0:
        with open(part, "ab", buffering=0) as fh:  # unbuffered: what arrived is on disk for a resume
            http_get(url, fh, resume_size=have, headers=build_hf_headers(token=access.token or False),
                     expected_size=f.size, displayed_filename=f.name, tqdm_class=_silent_tqdm())
    expected, actual = file_digest(part, f)
    if expected != actual:
        part.unlink(missing_ok=True)  # the next try starts this file over
        raise HubError("checksum", f"checksum mismatch for {f.name} of {plan_.model_id}: expected {expected}, got "
                                   f"{actual} (the file was discarded; retry the job to download it again)")
    os.replace(part, final)


def _silent_tqdm():
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def check_disk(plan_: HubPlan, models_dir: Path, staging: Path, access: HubAccess) -> None:
    """Fails (``disk``) before any byte is written when the rest of the download does not fit."""
    have, _ = _bytes_in(staging, plan_) if staging.is_dir() else (0, 0)
    needed = plan_.total_bytes - have
    free = shutil.disk_usage(models_dir).free
    if needed + access.keep_free_bytes > free:
        keep = f" plus {access.keep_free_bytes} bytes kept free (TRAINER_HUB_KEEP_FREE_BYTES)" \
            if access.keep_free_bytes else ""
        raise HubError("disk", f"not enough free disk to download {plan_.model_id}: needs {needed} bytes "
                               f"({human_bytes(needed)}){keep}, {free} bytes ({human_bytes(free)}) free in the models "
                               "folder")


def ensure_model(model_id: str, models_dir: Path, access: HubAccess,
                 report: Callable[[Progress], None] = lambda p: None) -> Path:
    """The folder of ``model_id`` in ``models_dir``, downloaded from the hub first when it is not there.

    One download per model at a time (a lock file); whoever waits reports the other's progress and then finds
    the folder complete. Resumes the ``.part`` files a killed download left. Raises ``HubError``."""
    models_dir = Path(models_dir)
    folder = model_folder(models_dir, model_id)
    if is_complete(folder):
        return folder
    downloads = _downloads(models_dir)
    downloads.mkdir(parents=True, exist_ok=True)
    staging = downloads / folder_name(model_id)
    lock_path = downloads / (folder_name(model_id) + ".lock")
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_for_other(lock, staging, model_id, report)
        try:
            if is_complete(folder):
                return folder
            return _download_locked(model_id, models_dir, folder, staging, access, report)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait_for_other(lock, staging: Path, model_id: str, report: Callable[[Progress], None]) -> None:
    """Blocks until the other holder of the lock is done, reporting its progress from the staging folder."""
    while True:
        plan_file = staging / PLAN_FILE
        if plan_file.is_file():
            try:
                p = HubPlan.from_json(plan_file.read_text(encoding="utf-8"))
                done, files = _bytes_in(staging, p)
                report(Progress(model=model_id, phase="waiting", files_done=files, files_total=len(p.files),
                                bytes_done=done, bytes_total=p.total_bytes))
            except (OSError, ValueError, KeyError, TypeError):
                pass
        else:
            report(Progress(model=model_id, phase="waiting"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(PROGRESS_EVERY)


def _download_locked(model_id: str, models_dir: Path, folder: Path, staging: Path, access: HubAccess,
                     report: Callable[[Progress], None]) -> Path:
    report(Progress(model=model_id, phase="planning"))
    p = plan(model_id, access)
    old = staging / PLAN_FILE
    if old.is_file():
        try:
            if HubPlan.from_json(old.read_text(encoding="utf-8")).revision != p.revision:
                shutil.rmtree(staging)  # the model changed on the hub since: start over
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(staging, ignore_errors=True)
    check_disk(p, models_dir, staging, access)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / PLAN_FILE).write_text(p.to_json(), encoding="utf-8")
    hf = _hf(access)
    reporter = _Reporter(p, staging, report)
    report(reporter.snapshot())
    with reporter:
        for f in p.files:
            reporter.file = f.name
            try:
                _download_file(hf, access, p, f, staging)
            except Exception as exc:
                raise _translate(exc, model_id, access) from None
    manifest = {"id": model_id, "revision": p.revision, "source": "hub", "downloaded_at": time.time(),
                "files": [asdict(f) for f in p.files], "size_bytes": p.total_bytes}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    (staging / PLAN_FILE).unlink()
    if folder.exists():  # an incomplete folder (no config.json) someone left: replace it
        shutil.rmtree(folder)
    os.replace(staging, folder)
    done = reporter.snapshot("done")
    done.bytes_done, done.files_done, done.eta_seconds = p.total_bytes, len(p.files), 0.0
    report(done)
    return folder


# -- what is on disk ---------------------------------------------------------------------------------------------


@dataclass
class LocalModel:
    """A model folder under the models folder (downloaded or placed there), or a download in progress."""

    id: str
    size_bytes: int
    files: int
    source: str
    """``hub`` (downloaded by the trainer), ``local`` (placed there) or ``partial`` (a download not finished)."""
    revision: str = ""
    bytes_total: int = 0
    """For a partial download: the full size."""


def _dir_size(folder: Path) -> tuple[int, int]:
    size = files = 0
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            size += p.stat().st_size
            files += 1
    return size, files


def local_models(models_dir: Path) -> list[LocalModel]:
    models_dir = Path(models_dir)
    out: list[LocalModel] = []
    if not models_dir.is_dir():
        return out
    for child in sorted(models_dir.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or not is_complete(child):
            continue
        size, files = _dir_size(child)
        manifest = {}
        try:
            manifest = json.loads((child / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        model_id = manifest.get("id") or (child.name.replace("--", "/", 1) if "--" in child.name else child.name)
        out.append(LocalModel(id=model_id, size_bytes=size, files=files, source="hub" if manifest else "local",
                              revision=str(manifest.get("revision") or ""), bytes_total=size))
    downloads = _downloads(models_dir)
    if downloads.is_dir():
        for child in sorted(downloads.iterdir()):
            if not child.is_dir() or not (child / PLAN_FILE).is_file():
                continue
            try:
                p = HubPlan.from_json((child / PLAN_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            size, files = _dir_size(child)
            out.append(LocalModel(id=p.model_id, size_bytes=size, files=files, source="partial",
                                  revision=p.revision, bytes_total=p.total_bytes))
    return out


def delete_model(models_dir: Path, model_id: str) -> int:
    """Removes the model's folder (and any partial download); returns the bytes freed. ``FileNotFoundError``
    when neither exists. The caller checks that no running job uses it."""
    models_dir = Path(models_dir)
    name = folder_name(model_id)
    if not name or name.startswith(".") or "/" in name or name in ("..",):
        raise FileNotFoundError(model_id)
    targets = [p for p in (models_dir / name, _downloads(models_dir) / name) if p.is_dir()]
    if not targets:
        raise FileNotFoundError(model_id)
    freed = 0
    for t in targets:
        freed += _dir_size(t)[0]
        shutil.rmtree(t)
    return freed


# -- create-time checks ------------------------------------------------------------------------------------------

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


def check_model_id(model_id: str) -> None:
    """``InvalidArgument`` unless ``model_id`` looks like a hub id (``org/name``, no ``..`` or ``--``)."""
    from services.common.errors import InvalidArgument

    if not _ID_RE.match(model_id) or ".." in model_id or "--" in model_id:
        raise InvalidArgument(f"{model_id!r} is not a model hub id (expected org/name: letters, digits, "
                              "'-', '_', '.')", field="base_model")


def remote_model(model_id: str, access: HubAccess):
    """The ``BaseModelInfo`` of a hub model that is not in the catalogue nor the models folder (create-time
    check). ``InvalidArgument(field="base_model")`` naming the failure (unknown id, gated, unsupported
    architecture); ``FailedPrecondition`` when the hub cannot be reached."""
    from services.common.errors import FailedPrecondition, InvalidArgument
    from services.trainer.models import BaseModelInfo, human_size

    check_model_id(model_id)
    try:
        p = plan(model_id, access, timeout=15.0)
    except HubError as exc:
        if exc.kind in ("unreachable", "failed"):
            raise FailedPrecondition(f"cannot check base model {model_id}: {exc.message}") from None
        raise InvalidArgument(exc.message, field="base_model") from None
    weights = sum(f.size for f in p.files if f.name.endswith((".safetensors", ".bin")))
    params = weights // 2 if weights else 0  # bf16/fp16 weights; a display estimate only
    tok = p.config.get("max_position_embeddings") or 2048
    return BaseModelInfo(
        id=model_id, name=model_id.rsplit("/", 1)[-1], provider=model_id.split("/", 1)[0] if "/" in model_id
        else "hub", parameters=params, size=human_size(params), verticals=["general"], capabilities=["completion"],
        recommended=False, available=True, unavailable_reason="", max_seq_length=int(tok),
        description=f"From the model hub ({', '.join(p.config.get('architectures') or [])}, "
                    f"{human_bytes(p.total_bytes)} to download)", path=None, downloaded=False,
    )
