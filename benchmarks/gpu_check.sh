#!/usr/bin/env bash
# GPU check for latnas, from a source checkout, on a GPU machine whose Python already has torch with
# CUDA (no network, nothing installed). Every step is time-boxed with `timeout`; the whole run stays
# under 6 minutes. Prints the tables; logs go to OUT_DIR (default /tmp/latnas-gpu-check).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # PYTHON=python3.11 to pick the interpreter
#
# Steps: environment; the GPU tests (tests/test_profilers_gpu.py: timing modes, precisions, layouts,
# batches, TensorRT where installed); profiler stability on torch-cuda with graph and eager timing side
# by side (--quick: 14 FBNet blocks, two passes each); the fusion benchmark and the whole-model
# predictor benchmark on torch-cuda. Without a GPU every step still runs and says why it had nothing
# to time (fail soft); the exit status is then 0. With a GPU it is 1 when any step failed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
OUT=${1:-/tmp/latnas-gpu-check}
mkdir -p "$OUT"
export LATNAS_CACHE_DIR="$OUT/cache"   # TensorRT timing caches, ExecuTorch programs: kept out of ~/.cache
NOISE='^\[cpuinfo|^\[threadpool|torchao|_pytree.py|^W[0-9]{4} '
failed=()
t_start=$(date +%s)

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0 rc
    t0=$(date +%s)
    echo
    echo "=== $name (time box ${limit}s)"
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    grep -v -E "$NOISE" "$OUT/$name.log" | tail -n 60
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "=== $name: TIMED OUT after ${limit}s (partial log above, full log $OUT/$name.log)"
    else
        echo "=== $name: exit $rc in $(( $(date +%s) - t0 ))s"
    fi
    [ "$rc" -eq 0 ] || failed+=("$name($rc)")
}

step env 45 "$PY" - <<'PYEOF'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB",
          "L2", getattr(p, "L2_cache_size", "?"))
for lib in ("pynvml", "tensorrt", "onnxruntime", "executorch"):
    print(lib, "yes" if importlib.util.find_spec(lib) else "no")
PYEOF
HAS_GPU=0
grep -q "available True" "$OUT/env.log" && HAS_GPU=1

step gpu_tests 90 "$PY" -m pytest tests/test_profilers_gpu.py -q -p no:cacheprovider -rs
step stability_torch_cuda 80 "$PY" benchmarks/profiler_stability.py --quick --backends torch-cuda --cuda-modes graph,eager
step fusion_torch_cuda 50 "$PY" benchmarks/fusion.py --quick --backend torch-cuda
step predictor_torch_cuda 90 "$PY" benchmarks/predictor_ort.py --quick --backend torch-cuda --models 16

echo
echo "=== gpu_check done in $(( $(date +%s) - t_start ))s; logs in $OUT"
if [ "$HAS_GPU" != "1" ]; then
    echo "no CUDA GPU here: the GPU steps had nothing to time (see their reasons above)"
    exit 0
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed steps: ${failed[*]}"
    exit 1
fi
exit 0
