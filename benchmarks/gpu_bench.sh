#!/usr/bin/env bash
# The GPU rows of benchmarks/train_bench.py in one command, for a CUDA machine without network access:
# SmolLM2-135M's shape and SmolLM2-1.7B's (random weights, SmolLM2's tokenizer), bf16, each at a batch that
# keeps the card busy, on the distinct-instruction data (SFT) and the sample pairs (DPO):
#   product SFT | TRL SFTTrainer tuned | TRL tuned + Liger kernels | product 4-bit | TRL 4-bit | product DPO |
#   TRL DPOTrainer with precomputed reference
#
# Here:   .venv/bin/python benchmarks/gpu_carry.py        (writes .gpu/: packages, tokenizer, data)
# There:  bash benchmarks/gpu_bench.sh                      (from the repository root, .gpu/ copied along)
#
# Figures and logs go to $OUT (default /tmp/gpu-bench): env.txt (device, driver, versions), bench-135m.{log,json},
# bench-1.7b.{log,json}. Settings: BATCH_135M (64), BATCH_1_7B (32), STEPS (12 SFT steps), DPO_STEPS (6),
# SIZES ("135m 1.7b"), ROW_TIMEOUT (seconds per size, 280), DEVICE (cuda; cpu to try the script on a CPU),
# PYTHON (python3), GPU_DIR (.gpu), GPU_BENCH_NO_SITE (set: use the installed packages, not .gpu/site.tar.gz).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-bench}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
GPU_DIR=${GPU_DIR:-.gpu}
if [ ! -d "$GPU_DIR/model" ] || [ ! -f "$GPU_DIR/data/sft.jsonl" ]; then
  echo "no .gpu/ here: run benchmarks/gpu_carry.py on a machine with this checkout's environment first" >&2
  exit 2
fi
if [ -f "$GPU_DIR/site.tar.gz" ] && [ -z "${GPU_BENCH_NO_SITE:-}" ]; then
  rm -rf /tmp/gpu-bench-site && mkdir -p /tmp/gpu-bench-site
  tar -xzf "$GPU_DIR/site.tar.gz" -C /tmp/gpu-bench-site || exit 2
  export PYTHONPATH="/tmp/gpu-bench-site/site:$PWD:$PWD/generated"
else
  export PYTHONPATH="$PWD:$PWD/generated${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "peft", "trl", "datasets", "pyarrow", "bitsandbytes", "liger_kernel",
             "triton", "accelerate", "pydantic", "grpc", "google.protobuf"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:  # a missing package is a finding, not a stop
        print(name, "NOT IMPORTABLE:", type(exc).__name__, str(exc).splitlines()[0][:200])
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available())
EOF
} 2>&1 | tee "$OUT/env.txt"

ROWS=product-sft@distinct,trl-sft-tuned@distinct,trl-sft-liger@distinct,product-sft-4bit@distinct,trl-sft-4bit@distinct,product-dpo,trl-dpo-precompute
status=0
for size in ${SIZES:-135m 1.7b}; do
  case "$size" in
    135m) extra=(); batch=${BATCH_135M:-64} ;;
    1.7b) extra=(--architecture smollm2-1.7b); batch=${BATCH_1_7B:-32} ;;
    *) echo "SIZES: unknown size $size (135m, 1.7b)" >&2; exit 2 ;;
  esac
  timeout --signal=INT --kill-after=20 "${ROW_TIMEOUT:-280}" "$PY" benchmarks/train_bench.py --device "$DEVICE" --random-init \
    "${extra[@]}" --model-path "$GPU_DIR/model" --data-dir "$GPU_DIR/data" --batch-size "$batch" \
    --steps "${STEPS:-12}" --dpo-steps "${DPO_STEPS:-6}" --rows "$ROWS" --work-dir "/tmp/gpu-bench-work-$size" \
    --json "$OUT/bench-$size.json" 2>&1 | tee "$OUT/bench-$size.log" || status=1
  for f in /tmp/gpu-bench-work-"$size"/logs/*.log; do  # the rows' own logs, tails only (the transfer is small)
    [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }
  done > "$OUT/rows-$size.txt" 2>&1
done
exit $status
