"""A tiny random Llama for tests: built from a config, with a BPE tokenizer trained on the fly.

``build_tiny_model(models_dir)`` writes a normal Hugging Face model folder
(``models_dir/test--tiny-llama``: config.json, model.safetensors, tokenizer files with a ChatML chat template),
so it is listed and loaded exactly like a provisioned base model. Nothing is downloaded. The build is
deterministic (fixed seeds, fixed corpus) and idempotent: an existing folder with config.json is reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_MODEL_ID = "test/tiny-llama"

# ChatML, the template SmolLM2-Instruct uses, so tests exercise the same shape of prompt as production.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

_WORDS = (
    "the contract court clause liability party agreement statute precedent ruling appeal judge patient "
    "diagnosis treatment dose symptom clinical trial risk code function variable bug test compile error "
    "market price risk return portfolio asset debate argument claim evidence reason answer question "
    "should would could because therefore however instruction input output model train data a an is are "
    "was were be of to in for on with by from as at this that it not or and but if then than"
).split()


def _corpus(n_lines: int = 400) -> list[str]:
    """A fixed pseudo-text corpus (no randomness from the environment) to train the BPE merges on."""
    lines = []
    state = 12345
    for i in range(n_lines):
        words = []
        for _ in range(12):
            state = (state * 1103515245 + 12345) % (2**31)
            words.append(_WORDS[state % len(_WORDS)])
        lines.append(" ".join(words).capitalize() + (". " if i % 3 else "? ") + str(i))
    return lines


def _build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(models_dir: Path | str, model_id: str = TINY_MODEL_ID, *, vocab_size: int = 512,
                     seed: int = 0) -> Path:
    """Build (once) a tiny random LlamaForCausalLM + tokenizer under ``models_dir/<id with / -> -->``.

    Hidden size 64, 2 layers, 4 heads (2 KV heads), max_position_embeddings 512, fp32 safetensors.
    Returns the model folder. Safe to call from several processes: the folder appears atomically.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    models_dir = Path(models_dir)
    target = models_dir / model_id.replace("/", "--")
    if (target / "config.json").exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models_dir))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process won the race: its folder is equivalent (deterministic build).
            if not (target / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
