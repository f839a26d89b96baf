"""Merge and export of a completed job's adapter: a merged Hugging Face model and GGUF files for llama.cpp.

- ``merge``: base + adapter folded into one model (``export/merged/``), loadable with
  ``AutoModelForCausalLM.from_pretrained``.
- ``gguf``: a GGUF file (f16 or q8_0) written with the ``gguf`` package from the merged model.
- ``worker``: ``python -m services.trainer.model_export JOB_DIR KIND`` does one export in its own process,
  printing progress as JSON lines; ``manager`` runs, watches and cancels those processes for the service.

See docs/model_export.md.
"""

KINDS = ("merged", "gguf_f16", "gguf_q8_0")
"""The exports a completed job offers."""
EXPORT_DIR = "export"
"""The folder (inside the job's folder) the exports are written to."""
MERGED_DIR = "merged"
