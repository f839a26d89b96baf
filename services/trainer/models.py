"""The base-model catalogue: data in ``catalogue.json`` plus whatever model folders the models folder holds.

A local model folder is ``<models_dir>/<id with "/" replaced by "--">/`` holding ``config.json``, the weights
and the tokenizer. A catalogue model is available when its folder is there; a folder that is not in the
catalogue is listed too (available), described from its ``config.json``. Nothing here imports an ML library.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from services.common.errors import InvalidArgument

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
UNAVAILABLE_REASON = "weights not on this server (no model hub reachable); place them in {folder}"
HUB_REASON = "not downloaded yet: a job downloads it from the model hub while preparing (or pull it first)"


@dataclass
class BaseModelInfo:
    """A base model as ListBaseModels shows it, plus its local folder when it is available."""

    id: str
    name: str
    provider: str
    parameters: int
    size: str
    verticals: list[str]
    capabilities: list[str]
    recommended: bool
    available: bool
    unavailable_reason: str
    max_seq_length: int
    description: str
    path: Path | None = None
    aliases: list[str] = field(default_factory=list)
    downloaded: bool = True
    """Whether its weights are in the models folder (False: a job downloads them from the hub first)."""
    encoder_only: bool = False
    """A bidirectional encoder (BERT family): it cannot generate, so only the ``reward`` method trains it."""
    model_type: str = ""
    """``config.json``'s ``model_type`` when the folder is here (``bert``, ``llama``...), else the catalogue's."""


# Encoder-only model types (bidirectional, no causal LM head) and the names of their attention projections that
# LoRA adapts by default (the decoders' q_proj / v_proj do not exist in them).
ENCODER_TARGET_MODULES = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"], "electra": ["query", "value"], "ernie": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"], "deberta": ["in_proj"], "deberta-v2": ["query_proj", "value_proj"],
    "mpnet": ["q", "v"], "albert": ["query", "value"], "modernbert": ["Wqkv"],
}


def is_encoder_config(config: dict) -> bool:
    """A ``config.json`` of an encoder-only model: a known encoder ``model_type``, or architectures that are
    all masked-LM / pre-training / classification heads and none causal."""
    if config.get("model_type") in ENCODER_TARGET_MODULES:
        return not config.get("is_decoder", False)
    archs = config.get("architectures") or []
    return bool(archs) and not any("CausalLM" in a or "LMHeadModel" in a or "ForConditionalGeneration" in a
                                   for a in archs) and all(a.endswith(("ForMaskedLM", "ForPreTraining"))
                                                          for a in archs)


def encoder_target_modules(model_type: str) -> list[str]:
    """The LoRA target modules of an encoder's attention (``query``/``value`` for the BERT family)."""
    return list(ENCODER_TARGET_MODULES.get(model_type, ["query", "value"]))


def folder_name(model_id: str) -> str:
    return model_id.replace("/", "--")


def human_size(parameters: int) -> str:
    """135M, 1.7B, 8B: parameter counts as people write them."""
    if parameters <= 0:
        return "unknown"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if parameters >= scale:
            value = parameters / scale
            text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            return text.removesuffix(".0") + unit
    return str(parameters)


@lru_cache(maxsize=1)
def _load_catalogue_file() -> dict:
    with open(CATALOGUE_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _catalogue() -> tuple[dict, ...]:
    return tuple(_load_catalogue_file()["models"])


def count_parameters(folder: Path) -> int:
    """Parameters from the safetensors headers (8-byte length + JSON), without loading any weight."""
    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            continue
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta.get("shape", []):
                    count *= d
                total += count
    return total


def _read_config(folder: Path) -> dict:
    try:
        with open(folder / "config.json", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _local_folders(models_dir: Path) -> dict[str, Path]:
    """Model folders under ``models_dir`` by model id (hidden/temporary folders skipped)."""
    out: dict[str, Path] = {}
    if not models_dir.is_dir():
        return out
    for child in sorted(models_dir.iterdir()):
        if child.name.startswith(".") or not (child / "config.json").is_file():
            continue
        out[child.name.replace("--", "/", 1) if "--" in child.name else child.name] = child
    return out


def _from_entry(entry: dict, models_dir: Path, local: Path | None, hub: bool = False) -> BaseModelInfo:
    folder = models_dir.absolute() / folder_name(entry["id"])
    trainable = entry.get("trainable", True)
    available = trainable and (local is not None or hub)
    if not trainable:
        reason = entry.get("untrainable_reason", "this trainer cannot fine-tune it")
    elif local is not None:
        reason = ""
    elif hub:
        reason = HUB_REASON
    else:
        reason = UNAVAILABLE_REASON.format(folder=folder)
    max_len = int(entry.get("max_seq_length", 0))
    config = _read_config(local) if local is not None else {}
    if local is not None:
        max_len = int(config.get("max_position_embeddings", max_len) or max_len)
    return BaseModelInfo(
        id=entry["id"], name=entry.get("name", entry["id"]), provider=entry.get("provider", ""),
        parameters=int(entry.get("parameters", 0)), size=human_size(int(entry.get("parameters", 0))),
        verticals=list(entry.get("verticals", [])), capabilities=list(entry.get("capabilities", [])),
        recommended=bool(entry.get("recommended", False)), available=available, unavailable_reason=reason,
        max_seq_length=max_len, description=entry.get("description", ""),
        path=local.absolute() if available and local is not None else None, aliases=list(entry.get("aliases", [])),
        downloaded=local is not None,
        encoder_only=is_encoder_config(config) if config else bool(entry.get("encoder_only", False)),
        model_type=str(config.get("model_type") or entry.get("model_type", "")),
    )


def _from_folder(model_id: str, folder: Path) -> BaseModelInfo:
    config = _read_config(folder)
    params = count_parameters(folder)
    arch = ",".join(config.get("architectures", [])) or config.get("model_type", "unknown architecture")
    return BaseModelInfo(
        id=model_id, name=model_id.rsplit("/", 1)[-1], provider=model_id.split("/", 1)[0] if "/" in model_id
        else "local", parameters=params, size=human_size(params), verticals=["general"],
        capabilities=["chat"] if (folder / "chat_template.jinja").exists() or "chat_template" in
        _read_tokenizer_config(folder) else ["completion"],
        recommended=False, available=True, unavailable_reason="",
        max_seq_length=int(config.get("max_position_embeddings", 2048) or 2048),
        description=f"Local model folder ({arch}) found in the models folder.", path=folder.absolute(),
        encoder_only=is_encoder_config(config), model_type=str(config.get("model_type", "")),
    )


def _read_tokenizer_config(folder: Path) -> dict:
    try:
        with open(folder / "tokenizer_config.json", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def list_models(models_dir: Path, hub: bool = False) -> list[BaseModelInfo]:
    """The catalogue (in its order), then the other model folders found in ``models_dir`` (by id). ``hub``:
    model hub access is on, so a trainable catalogue model without a folder is available (downloaded first)."""
    models_dir = Path(models_dir)
    local = _local_folders(models_dir)
    out = []
    seen = set()
    for entry in _catalogue():
        out.append(_from_entry(entry, models_dir, local.get(entry["id"]), hub))
        seen.add(entry["id"])
    for model_id, folder in local.items():
        if model_id not in seen:
            out.append(_from_folder(model_id, folder))
    return out


def resolve_model(models_dir: Path, model_id: str, remote: Callable[[str], BaseModelInfo] | None = None
                  ) -> BaseModelInfo:
    """The available model ``model_id`` names (its id or a catalogue alias; empty: the default).

    ``remote``: hub access is on; catalogue models without a folder are available (``path`` None, downloaded by
    the job), and an id found nowhere here is looked up with ``remote(model_id)`` (which raises when the hub
    does not have it). Raises ``InvalidArgument(field="base_model")`` when it is unknown or not available here,
    with the reason.
    """
    model_id = (model_id or DEFAULT_MODEL_ID).strip()
    for info in list_models(models_dir, hub=remote is not None):
        if model_id == info.id or model_id in info.aliases:
            if not info.available:
                raise InvalidArgument(f"{info.id} is not available: {info.unavailable_reason}", field="base_model")
            return info
    if remote is not None:
        return remote(model_id)
    known = ", ".join(m.id for m in list_models(models_dir) if m.available) or "none"
    aragora_id = _load_catalogue_file().get("aragora_selector_ids", {}).get(model_id)
    if aragora_id:
        raise InvalidArgument(f"{model_id!r} ({aragora_id} in Aragora's model selector) is not in this trainer's "
                              f"catalogue (available here: {known})", field="base_model")
    raise InvalidArgument(f"unknown base model {model_id!r} (available here: {known})", field="base_model")
