#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, make nnspec runnable, run the parity suite on the GPU
# (tests/test_parity.py: every spec's forward and gradients in float64 and forward and 10-step training
# trajectory in float32, against the NumPy float64 reference, on every engine present), the epoch time per
# precision and the benchmark harness on the GPU, and write one markdown report. About 6 minutes on one H200.
#
#   benchmarks/gpu_check.sh [REPORT.md]
#
# Install: when nnspec's engines do not import, a fresh virtual environment gets `pip install -e '.[gpu,dev]'`;
# on a machine without a package index, wheels in ./.whl are installed (pip --no-index --no-deps) instead.
# Data: Fashion-MNIST from $NNSPEC_DATA, ~/.keras/datasets or /usr/share/datasets/fashion-mnist.
# Every section has a time limit (NNSPEC_GPU_CHECK_SCALE multiplies them) and reports what it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
report=$(realpath -m "${1:-gpu_report.md}")
scale=${NNSPEC_GPU_CHECK_SCALE:-1}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1 NNSPEC_OFFLINE=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

limit() { echo $(( $1 * scale )); }
section() { printf '\n## %s\n\n' "$1" >>"$report"; echo "== $1" >&2; }
block() { printf '```\n' >>"$report"; cat >>"$report"; printf '```\n' >>"$report"; }

if ! $PY -c "import nnspec, jax, keras, pytensor" 2>/dev/null; then
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nnspec-site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/nnspec-site"
  else
    $PY -m venv .venv-gpu && . .venv-gpu/bin/activate && pip install -q -e '.[gpu,dev]' || exit 1
    PY=python
  fi
fi

printf '# nnspec GPU check\n\n%s, commit %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" >"$report"

section "Machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import sys, jax, numpy; print('python', sys.version.split()[0], '| jax', jax.__version__, '| numpy', numpy.__version__); print(jax.devices())"
  nproc; } | block

section "nnspec backends"
timeout "$(limit 60)" $PY -m nnspec backends 2>&1 | block

section "Parity on the GPU (tests/test_parity.py)"
NNSPEC_TEST_DEVICE=gpu timeout "$(limit 150)" $PY -m pytest tests/test_parity.py -q -rs -p no:cacheprovider --no-header 2>&1 | tail -n 40 | block

section "Epoch time per precision (python -m benchmarks.gpu_precision)"
timeout "$(limit 150)" $PY -m benchmarks.gpu_precision --device gpu --models mlp,cnn,resnet --engines jax,keras,theano \
  --precisions float32,tf32,mixed_bfloat16,mixed_float16 --epochs 4 >>"$report" 2>/tmp/gpu_precision.err || tail -n 5 /tmp/gpu_precision.err | block

section "Benchmark harness on the GPU (python -m benchmarks.run --device gpu)"
timeout "$(limit 150)" $PY -m benchmarks.run --device gpu --models mlp,cnn --engines jax,keras --epochs 3 --markdown /tmp/gpu_harness.md >/tmp/gpu_harness.log 2>&1
status=$?
if [ -s /tmp/gpu_harness.md ]; then cat /tmp/gpu_harness.md >>"$report"; else tail -n 20 /tmp/gpu_harness.log | block; fi
[ "$status" = 0 ] || printf '\n(harness exit status %s)\n' "$status" >>"$report"

echo "report: $report" >&2
