"""A tiny random BERT encoder for tests: built from a config, with a WordPiece tokenizer trained on the fly.

``build_tiny_bert(models_dir)`` writes a normal Hugging Face model folder (``models_dir/test--tiny-bert``:
config.json with ``BertForMaskedLM`` like a published BERT checkpoint, model.safetensors, a BERT tokenizer) that
the trainer lists and loads like a provisioned encoder such as ``nlpaueb/legal-bert-base-uncased``. Nothing is
downloaded; the build is deterministic and idempotent (an existing folder with config.json is reused).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.support.tiny_model import _corpus

TINY_BERT_ID = "test/tiny-bert"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(_corpus(), trainer=trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                   cls_token="[CLS]", mask_token="[MASK]", model_max_length=128)


def build_tiny_bert(models_dir: Path | str, model_id: str = TINY_BERT_ID, *, vocab_size: int = 300,
                    seed: int = 0) -> Path:
    """Build (once) a tiny random ``BertForMaskedLM`` + tokenizer under ``models_dir/<id with / -> -->``.

    Hidden size 32, 2 layers, 2 heads, max_position_embeddings 128 (a small absolute limit, like BERT's 512).
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM

    models_dir = Path(models_dir)
    target = models_dir / model_id.replace("/", "--")
    if (target / "config.json").exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(vocab_size)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                        architectures=["BertForMaskedLM"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models_dir))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
