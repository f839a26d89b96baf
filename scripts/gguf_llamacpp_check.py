"""Runs an exported GGUF in llama.cpp (through ``llama-cpp-python``) and compares its next-token predictions with
the merged model in transformers. Not part of the test suite: llama-cpp-python compiles llama.cpp at install time,
so it lives in its own virtual environment.

    # 1. with the product's venv: the merged model's reference predictions on some prompts
    .venv/bin/python scripts/gguf_llamacpp_check.py reference JOB_DIR/export/merged refs.json
    # 2. with a venv holding llama-cpp-python (pip install llama-cpp-python numpy)
    /tmp/llamacpp-venv/bin/python scripts/gguf_llamacpp_check.py compare JOB_DIR/export/NAME-q8_0.gguf refs.json

``compare`` prints, per prompt, whether llama.cpp tokenizes it to the same ids, and over all positions the share
where llama.cpp's most likely next token equals the merged model's, and the largest logit difference.
"""

from __future__ import annotations

import json
import sys

PROMPTS = [
    "Should the court uphold the contract clause?",
    "The court ruled that the clause was void because",
    ("<|im_start|>user\nAnswer the debate question with the consensus view.\nShould the party bear the risk?"
     "<|im_end|>\n<|im_start|>assistant\n"),
    "risk 42 return, the portfolio",
    "A patient with the symptom should",
]


def reference(merged_dir: str, out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    rows = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt).input_ids
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            rows.append({"prompt": prompt, "ids": ids, "logits": logits.tolist()})
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(rows, fh)


def compare(gguf_path: str, refs: str) -> int:
    import numpy as np
    from llama_cpp import Llama

    with open(refs, encoding="utf-8") as fh:
        rows = json.load(fh)
    llm = Llama(model_path=gguf_path, n_ctx=512, logits_all=True, verbose=False, n_threads=2)
    agree = total = 0
    worst = 0.0
    for row in rows:
        ids = llm.tokenize(row["prompt"].encode(), add_bos=False, special=True)
        same_ids = ids == row["ids"]
        llm.reset()
        llm.eval(row["ids"])
        got = np.array(llm.scores[: len(row["ids"])], dtype=np.float32)
        want = np.array(row["logits"], dtype=np.float32)
        worst = max(worst, float(np.abs(got - want).max()))
        match = got.argmax(-1) == want.argmax(-1)
        agree += int(match.sum())
        total += match.size
        print(f"tokens {'same' if same_ids else 'DIFFERENT'}; next-token agreement {int(match.sum())}/{match.size}:"
              f" {row['prompt'][:50]!r}")
    print(f"llama.cpp vs transformers (merged): next-token agreement {agree}/{total} ({agree / total:.1%}), "
          f"max |logit diff| {worst:.3g}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("reference", "compare"):
        sys.exit(__doc__)
    sys.exit(reference(sys.argv[2], sys.argv[3]) if sys.argv[1] == "reference" else compare(sys.argv[2], sys.argv[3]))
