"""Writing a merged Llama-family model as one GGUF file (f16 or q8_0) with the ``gguf`` package, for llama.cpp
and Ollama.

What goes in, following llama.cpp's GGUF conventions (docs/model_export.md has the details):
- metadata: ``general.architecture = llama`` and the model's shape (context, embedding, feed-forward length,
  blocks, heads, KV heads, RoPE dimension and base, RMS-norm epsilon, vocabulary size), the file type;
- the tokenizer: a byte-level BPE vocabulary as ``tokenizer.ggml.model = gpt2`` with its tokens, token types
  (normal / control / user-defined / unused), merges, the pre-tokenizer name, the special token ids, whether
  BOS is added, and the chat template;
- the tensors under GGUF's standard names (``token_embd``, ``blk.N.attn_q``... ``output_norm``, ``output``),
  with the Q and K projections' rows reordered the way llama.cpp's rotary embedding expects (HF Llama rotates
  the two halves of a head; llama.cpp rotates interleaved pairs). 1-D tensors (norms) stay float32; the 2-D
  ones are float16 (``f16``) or 8-bit blocks of 32 with one f16 scale (``q8_0``; a tensor whose rows are
  not a multiple of 32 stays f16).

Tensors are written one at a time (header and tensor table first), so memory holds the file's metadata and
one tensor, not the whole model. The file is written as ``.<name>.tmp`` and renamed when complete.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from services.trainer.model_export.merge import ExportError, Progress

SUPPORTED_MODEL_TYPES = ("llama",)
QTYPES = ("f16", "q8_0")


def _rope_theta(config: dict) -> float:
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _rope_scaling(config: dict) -> dict | None:
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or None
    if not scaling or scaling.get("rope_type", scaling.get("type", "default")) in ("default", None):
        return None
    return scaling


def llama3_rope_factors(config: dict, head_dim: int) -> list[float] | None:
    """The per-frequency RoPE divisors of Llama 3.1's "llama3" scaling (llama.cpp's ``rope_freqs`` tensor);
    None when the model has no such scaling."""
    scaling = _rope_scaling(config)
    if scaling is None or scaling.get("rope_type", scaling.get("type")) != "llama3":
        return None
    base = _rope_theta(config)
    factor = float(scaling.get("factor", 8.0))
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old_len = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_len / low, old_len / high
    factors = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (base ** (i / head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return factors


def _permute_rotary(w, n_head: int):
    """HF's half-split rotary layout -> llama.cpp's interleaved one (rows of a Q or K projection)."""
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


# -- tokenizer -------------------------------------------------------------------------------------------------


def _pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name for the way text is split before BPE (``tokenizer.ggml.pre``)."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    types = [p.get("type") for p in parts if p]
    if types == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if types == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"  # SmolLM / SmolLM2
    if "Split" in types:
        pattern = json.dumps(parts[types.index("Split")].get("pattern", {}))
        if "\\\\p{N}{1,3}" in pattern and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in pattern:
            return "llama-bpe"  # Llama 3
        if "\\\\p{N}|" in pattern or "\\\\p{N}| ?" in pattern:
            return "qwen2"
    return "default"


def add_tokenizer(writer, model_dir: Path, vocab_size: int) -> dict:
    """Writes the tokenizer metadata; returns what it decided (model, pre, sizes) for the report."""
    import gguf
    from transformers import AutoTokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ExportError("GGUF export needs a fast tokenizer (tokenizer.json) in the merged model")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(f"GGUF export supports byte-level BPE tokenizers; this one is {model.get('type')!r}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = {a["content"]: bool(a.get("special")) for a in data.get("added_tokens") or []}
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            if token in added:
                types.append(gguf.TokenType.CONTROL if added[token] else gguf.TokenType.USER_DEFINED)
            else:
                types.append(gguf.TokenType.NORMAL)
    if len(by_id) > vocab_size:
        raise ExportError(f"the tokenizer has {len(by_id)} tokens, more than the model's vocab_size {vocab_size}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    pre = _pre_tokenizer_name(data)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            add(int(value))
    probe = tokenizer("a").input_ids
    writer.add_add_bos_token(bool(probe) and probe[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(bool(probe) and probe[-1] == tokenizer.eos_token_id and len(probe) > 1)
    if isinstance(tokenizer.chat_template, str) and tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    return {"tokenizer": "gpt2", "pre": pre, "tokens": len(tokens), "merges": len(merges)}


# -- the file --------------------------------------------------------------------------------------------------


def _plan(names, shapes: dict, qtype: str, n_layers: int):
    """(hf name, gguf name, ggml type) per tensor, in file order."""
    import gguf

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    q8 = gguf.GGMLQuantizationType.Q8_0
    block = gguf.GGML_QUANT_SIZES[q8][0]
    out = []
    for name in names:
        if name.endswith("rotary_emb.inv_freq"):
            continue
        stem, _, suffix = name.rpartition(".")
        mapped = name_map.get_name(stem)
        if mapped is None:
            raise ExportError(f"no GGUF name for the tensor {name!r}")
        shape = shapes[name]
        if len(shape) == 1:
            ggml_type = gguf.GGMLQuantizationType.F32
        elif qtype == "q8_0" and shape[-1] % block == 0:
            ggml_type = q8
        else:
            ggml_type = gguf.GGMLQuantizationType.F16
        out.append((name, f"{mapped}.{suffix}", ggml_type))
    return out


def _nbytes(shape, ggml_type) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[ggml_type]
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return rows * (shape[-1] // block) * size


def write_gguf(model_dir: Path, target: Path, qtype: str, name: str, progress: Progress) -> dict:
    """Writes ``target`` from the merged model in ``model_dir``; returns the file's figures."""
    import gguf
    import numpy as np
    import torch
    from safetensors import safe_open

    if qtype not in QTYPES:
        raise ExportError(f"unknown GGUF type {qtype!r}; one of {', '.join(QTYPES)}")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(f"GGUF export supports the Llama architecture (model_type llama); this model is "
                          f"{model_type!r}: use the merged export with llama.cpp's own converter")
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ExportError("the merged model has no model.safetensors")
    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    vocab_size = int(config["vocab_size"])

    tmp = target.with_name(f".{target.name}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        writer.add_name(name)
        writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
        writer.add_embedding_length(hidden)
        writer.add_block_count(n_layers)
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-5))
        writer.add_vocab_size(vocab_size)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tok = add_tokenizer(writer, model_dir, vocab_size)

        with safe_open(str(weights), framework="pt") as st:
            names = list(st.keys())
            shapes = {n: tuple(st.get_slice(n).get_shape()) for n in names}
            plan = _plan(names, shapes, qtype, n_layers)
            factors = llama3_rope_factors(config, head_dim)
            if factors is not None:
                writer.add_tensor_info("rope_freqs.weight", (len(factors),), np.dtype(np.float32), 4 * len(factors),
                                       raw_dtype=gguf.GGMLQuantizationType.F32)
            for hf_name, gguf_name, ggml_type in plan:
                shape = shapes[hf_name]
                writer.add_tensor_info(gguf_name, shape, np.dtype(np.float32), _nbytes(shape, ggml_type),
                                       raw_dtype=ggml_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            if factors is not None:
                writer.write_tensor_data(np.asarray(factors, dtype=np.float32))
            total = len(plan)
            for done, (hf_name, gguf_name, ggml_type) in enumerate(plan):
                data = st.get_tensor(hf_name).to(torch.float32).numpy()
                if gguf_name.endswith("attn_q.weight"):
                    data = _permute_rotary(data, n_head)
                elif gguf_name.endswith("attn_k.weight"):
                    data = _permute_rotary(data, n_kv)
                if ggml_type == gguf.GGMLQuantizationType.F32:
                    out = np.ascontiguousarray(data, dtype=np.float32)
                elif ggml_type == gguf.GGMLQuantizationType.F16:
                    out = np.ascontiguousarray(data, dtype=np.float16)
                else:
                    out = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), ggml_type)
                writer.write_tensor_data(out)
                if done % 8 == 7 or done + 1 == total:
                    progress(f"gguf_{qtype}", done + 1, total, f"tensor {gguf_name}")
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return {"size_bytes": target.stat().st_size, "tensors": len(plan), "type": qtype, **tok}
