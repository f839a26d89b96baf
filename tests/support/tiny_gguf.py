"""The tiny random Llama (``tiny_model.py``) written as a GGUF file with the ``gguf`` package, the way
llama.cpp's converter writes a Llama: F32 tensors under GGUF names (q/k rows permuted for its rotary layout), the
hyper-parameters under ``llama.*`` and the byte-level BPE tokenizer (``gpt2`` model: tokens, merges, special
ids, chat template) under ``tokenizer.*``. Provisioning reads the default model from such a file."""

from __future__ import annotations

import json
from pathlib import Path

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _permute(weights, n_head: int):
    """llama.cpp's q/k row order (rotary halves interleaved per head); transformers undoes it on load."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """Writes the model folder ``model_dir`` (a tiny Llama with a byte-level BPE tokenizer) to ``out``."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(config["hidden_size"] // n_head)
    writer.add_rope_freq_base(config.get("rope_theta") or config.get("rope_parameters", {}).get("rope_theta", 1e4))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

    vocab = tok["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"]: t["id"] for t in tok["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special[tok_config["bos_token"]])
    writer.add_eos_token_id(special[tok_config["eos_token"]])
    writer.add_pad_token_id(special[tok_config["pad_token"]])
    writer.add_unk_token_id(special[tok_config["unk_token"]])
    writer.add_add_bos_token(False)
    template = tok_config.get("chat_template") or (model_dir / "chat_template.jinja").read_text()
    writer.add_chat_template(template)

    weights = load_file(str(model_dir / "model.safetensors"))
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"].astype(np.float32))
    for i in range(config["num_hidden_layers"]):
        for hf, name in _LAYER_NAMES.items():
            w = weights[f"model.layers.{i}.{hf}"].astype(np.float32)
            if name == "attn_q.weight":
                w = _permute(w, n_head)
            elif name == "attn_k.weight":
                w = _permute(w, n_kv)
            writer.add_tensor(f"blk.{i}.{name}", w)
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"].astype(np.float32))
    writer.add_tensor("output.weight", weights["lm_head.weight"].astype(np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
