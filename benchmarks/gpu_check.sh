#!/usr/bin/env bash
# One-shot GPU check of the latency benchmark (~5 minutes on one H100/H200; installs nothing).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (env: FRAMES=30 WARMUP=3 STEP_TIMEOUT=150)
#
# Paper preset (random weights), fp16, L = 8, torch on CUDA, three interleaved naive-vs-cached runs:
#   1. eager:      naive eager fp16      vs cached eager fp16 (StreamProcessor + TorchBackend)
#   2. fast:       naive eager fp16      vs cached fast path (channels_last + CUDA graph of the per-frame step)
#   3. both_fast:  naive with the same fast paths vs cached fast path
# then prints a JSON summary (p50s, speedups, GFLOPs, GFLOP/s, peak GPU memory) of the runs that finished.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-${OUT:-/tmp/esan-gpu-check}}"
FRAMES="${FRAMES:-30}"
WARMUP="${WARMUP:-3}"
STEP_TIMEOUT="${STEP_TIMEOUT:-150}"
cd "$REPO" || exit 1
mkdir -p "$OUT"
log() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }

# esan.* importable without installing: a namespace shim of symlinks when the package is not installed
if ! timeout 60 python -c "import esan.bench.latency" 2>/dev/null; then
  SHIM="$OUT/.shim"
  mkdir -p "$SHIM/esan"
  ln -sfn "$REPO/train" "$SHIM/esan/train"
  ln -sfn "$REPO/export" "$SHIM/esan/export"
  ln -sfn "$REPO/runtime" "$SHIM/esan/runtime"
  ln -sfn "$REPO/benchmarks" "$SHIM/esan/bench"
  export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
  log "esan-rt is not installed: using the source tree through $SHIM"
fi

log "environment:"
timeout 120 python - <<'PY' || { log "torch with CUDA is required; stopping"; exit 2; }
import torch, torchvision
print(f"  torch {torch.__version__}, torchvision {torchvision.__version__}, CUDA {torch.version.cuda}")
assert torch.cuda.is_available(), "torch sees no CUDA device"
print(f"  GPU: {torch.cuda.get_device_name(0)}")
PY

run_step() {
  local name="$1"; shift
  log "step $name: starting (timeout ${STEP_TIMEOUT}s)"
  timeout "$STEP_TIMEOUT" python benchmarks/latency.py --preset paper --backend torch --device cuda \
    --precision fp16 --lookahead 8 --frames "$FRAMES" --warmup "$WARMUP" --out "$OUT/$name" "$@" \
    > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/$name.log" | sed 's/^/    /'
  log "step $name: exit code $rc"
}

run_step eager
run_step fast --cuda-graph --channels-last
run_step both_fast --cuda-graph --channels-last --naive-fast-paths

log "summary:"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = {}
for name in ("eager", "fast", "both_fast"):
    p = Path(sys.argv[1]) / name / "latency.json"
    if not p.is_file():
        out[name] = "no result (see the step's .log)"
        continue
    r = json.loads(p.read_text())
    s = r["schedules"]
    out[name] = {
        "naive_ms_p50": r["naive_ms_p50"], "cached_ms_p50": r["cached_ms_p50"], "speedup": r["speedup"],
        "flops_ratio": r["flops_ratio"],
        "naive": {k: s["naive"][k] for k in ("gflops_per_frame", "achieved_gflops_s", "peak_gpu_mem_mb", "detail")},
        "cached": {k: s["cached"][k] for k in ("gflops_per_frame", "achieved_gflops_s", "peak_gpu_mem_mb", "detail")},
        "gpu": r["machine"]["gpu"],
    }
print(json.dumps(out, indent=2))
PY
