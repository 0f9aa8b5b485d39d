#!/usr/bin/env bash
# Run bench/throughput.py on a CUDA machine and print its table.
#
#   bash bench/gpu.sh [more throughput.py options]     # from the repository root
#
# Writes $OUT/throughput_gpu.json, $OUT/throughput_gpu.md (the table) and
# $OUT/throughput_gpu.log (progress, environment, pip output); OUT defaults to
# ./bench_out. The whole script stays under 8 minutes: the environment step is
# capped at SETUP_TIMEOUT (default 150 s) and the benchmark at BENCH_TIMEOUT
# (default 300 s); the GPU-only tests then get the time that is left
# ($OUT/gpu_tests.txt; GPU_TESTS=0 skips them). The benchmark writes its JSON
# after every workload, so a run cut short keeps the workloads it finished.
#
# Environment, first that works:
#   1. $PYTHON, if set, used as it is.
#   2. python3 on the PATH, if it already has torch with CUDA, JAX with a GPU
#      backend, optax, flax, psutil and tqdm (the device machine's image does,
#      with newer versions than constraints.txt: the JSON records them). Missing
#      pure-Python extras (torch-lr-finder) are installed offline from $WHEELS.
#      The device machine reaches no package registry, so carry the wheel:
#          echo /.whl/ >> .git/info/exclude
#          python3 -m pip download --no-deps -d .whl torch-lr-finder==0.2.2
#      and pass carry=[".whl"]. Without it that contender reports "unavailable".
#   3. A fresh venv with the pinned CUDA builds from PyPI (needs the registry):
#      torch 2.13.0 (PyPI's Linux x86_64 wheel is the CUDA build), jax[cuda12]
#      0.10.2, optax 0.2.8, flax 0.12.8, torch-lr-finder 0.2.2, psutil, tqdm.
#
# Other settings: BENCH_DEVICE (cuda; cpu runs this script's CPU path for a test,
# e.g. BENCH_DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu.sh --quick
# --workloads mlp), BENCH_ROUNDS (7), WHEELS (.whl), VENV (/tmp/lrfind-gpu-venv).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-./bench_out}"
DEVICE="${BENCH_DEVICE:-cuda}"
ROUNDS="${BENCH_ROUNDS:-7}"
WHEELS="${WHEELS:-.whl}"
VENV="${VENV:-/tmp/lrfind-gpu-venv}"
SETUP_TIMEOUT="${SETUP_TIMEOUT:-150}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-300}"
mkdir -p "$OUT"
LOG="$OUT/throughput_gpu.log"
: >"$LOG"
started=$(date +%s)

say() { echo "gpu.sh: $*" | tee -a "$LOG" >&2; }

# Prints why $1 cannot run the benchmark on $DEVICE (nothing when it can).
missing() {
    "$1" - "$DEVICE" <<'EOF' 2>>"$LOG"
import importlib, sys
device = sys.argv[1]
problems = []
for name in ("numpy", "torch", "jax", "optax", "flax", "psutil", "tqdm"):
    try:
        importlib.import_module(name)
    except Exception as error:  # a broken install counts as missing
        problems.append(f"{name}: {error}")
if not problems and device == "cuda":
    import jax
    import torch
    if not torch.cuda.is_available():
        problems.append(f"torch {torch.__version__} sees no CUDA device")
    if jax.default_backend() != "gpu":
        problems.append(f"jax {jax.__version__} has no GPU backend ({jax.default_backend()})")
print("; ".join(problems))
EOF
}

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
        return
    fi
    local why
    if command -v python3 >/dev/null; then
        why=$(missing python3)
        if [[ -z "$why" ]]; then
            command -v python3
            return
        fi
        say "python3 on the PATH will not do: $why"
    fi
    say "creating $VENV with the pinned CUDA builds from PyPI"
    python3 -m venv "$VENV" >>"$LOG" 2>&1 || return 1
    timeout "$SETUP_TIMEOUT" "$VENV/bin/pip" install --disable-pip-version-check -q \
        "torch==2.13.0" "jax[cuda12]==0.10.2" "optax==0.2.8" "flax==0.12.8" \
        "torch-lr-finder==0.2.2" psutil tqdm matplotlib >>"$LOG" 2>&1 || return 1
    why=$(missing "$VENV/bin/python")
    if [[ -n "$why" ]]; then
        say "the new venv will not do either: $why"
        return 1
    fi
    echo "$VENV/bin/python"
}

if ! PY=$(pick_python); then
    say "no usable Python environment (see $LOG)"
    exit 1
fi
say "python: $PY"

# torch-lr-finder, offline, when the chosen Python lacks it.
if ! "$PY" -c "import torch_lr_finder" 2>/dev/null; then
    if compgen -G "$WHEELS/torch_lr_finder-*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/lrfind-extras \
            "$WHEELS"/torch_lr_finder-*.whl >>"$LOG" 2>&1 \
            && export PYTHONPATH="/tmp/lrfind-extras${PYTHONPATH:+:$PYTHONPATH}"
    elif [[ "$PY" != "$VENV/bin/python" ]]; then
        timeout 60 "$PY" -m pip install -q --target /tmp/lrfind-extras --no-deps \
            "torch-lr-finder==0.2.2" >>"$LOG" 2>&1 \
            && export PYTHONPATH="/tmp/lrfind-extras${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$PY" -c "import torch_lr_finder" 2>/dev/null \
        || say "torch-lr-finder not available: that contender will say so"
fi

{
    command -v nvidia-smi >/dev/null && nvidia-smi -L
    "$PY" -c "import sys, torch, jax; print(sys.version); print('torch', torch.__version__, \
'cuda', torch.version.cuda); print('jax', jax.__version__, jax.devices())"
} >>"$LOG" 2>&1
say "environment ready after $(($(date +%s) - started)) s; benchmark (at most ${BENCH_TIMEOUT} s)"

export PYTHONUNBUFFERED=1
timeout "$BENCH_TIMEOUT" "$PY" bench/throughput.py --device "$DEVICE" --rounds "$ROUNDS" \
    --json "$OUT/throughput_gpu.json" --markdown "$@" \
    >"$OUT/throughput_gpu.md" 2> >(tee -a "$LOG" >&2)
status=$?
if [[ $status -ne 0 && -s "$OUT/throughput_gpu.json" ]]; then
    "$PY" bench/throughput.py --from-json "$OUT/throughput_gpu.json" >"$OUT/throughput_gpu.md"
fi
cat "$OUT/throughput_gpu.md"
if [[ $status -ne 0 ]]; then
    say "throughput.py ended with status $status (124: timed out); finished workloads are in" \
        "$OUT/throughput_gpu.json"
fi
# The GPU-only tests (CUDA RNG restore, snapshot off the GPU, TF32 parity), in the
# time left of the 8 minutes, when the chosen Python has pytest.
left=$((470 - ($(date +%s) - started)))
if [[ "${GPU_TESTS:-1}" == 1 && $left -gt 20 ]]; then
    if "$PY" -c "import pytest" 2>/dev/null; then
        timeout "$left" "$PY" -m pytest -q -rs -p no:cacheprovider tests/torch/test_torch_cuda.py \
            "tests/parity/test_parity.py::test_gpu_parity_with_highest_matmul_precision" \
            >"$OUT/gpu_tests.txt" 2>&1
        say "GPU tests (status $?): $(tail -n 1 "$OUT/gpu_tests.txt")"
    else
        say "pytest not available to $PY: GPU tests not run"
    fi
fi
say "done in $(($(date +%s) - started)) s"
exit $status
