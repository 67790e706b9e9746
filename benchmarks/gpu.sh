#!/usr/bin/env bash
# The deep model's quality run on the GPU machine: Keras on JAX, steps/s and test NDCG@10 (benchmarks/gpu.py).
# Here, once: `make gpu-bundle` (wheels and data into .gpu/). There, with .gpu carried, in the repo root:
#   bash benchmarks/gpu.sh                                  # ml-100k and ml-latest-small, epochs chosen on validation
#   bash benchmarks/gpu.sh --datasets ml-100k --epochs 1    # a short check
# The wheels go into a temporary folder ahead of the machine's own packages (`pip --target`, no
# index, no deps: the machine has no network). GPU_LIMIT_S (default 470 s) stops the run inside
# the machine's minutes; each dataset's line is printed as soon as it is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BUNDLE=${GPU_BUNDLE:-.gpu}
SITE=$(mktemp -d)
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$BUNDLE"/wheels/*.whl
export PYTHONPATH="$SITE:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export RECSYS_SHARED_DATA_DIR=${RECSYS_SHARED_DATA_DIR:-$BUNDLE/data} RECSYS_HOME=${RECSYS_HOME:-$SITE/home}
# One XLA cache for the run: the refit compiles the same train step as the fit that chose its epochs.
export JAX_COMPILATION_CACHE_DIR=$SITE/xla JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())"
time timeout "${GPU_LIMIT_S:-470}" "$PYTHON" -m benchmarks.gpu "$@"
