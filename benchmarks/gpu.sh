#!/usr/bin/env bash
# genjax benchmarks on a GPU machine: the default suite (DCGAN-64 b64, DCGAN-32 b64, VAE b128)
# in float32 and bfloat16, genjax against PyTorch on the same GPU. Writes
# benchmarks/results/<date>_<time>_gpu.{json,md} and refreshes benchmarks/results/README.md;
# meant to finish in under 8 minutes on one H100/H200 (most of it is compiling, twice per model
# and dtype, in fresh processes).
#
#   bash benchmarks/gpu.sh [--dry-run] [more flags for `python -m benchmarks.run`]
#
# --dry-run: the same flow on the CPU (JAX_PLATFORMS=cpu), tiny networks, 2 steps, results in a
# temporary folder (unless --out is given).
#
# Python: $PYTHON (default python3) must have jax with CUDA, flax >= 0.12.8, optax, absl-py,
# numpy and, for the PyTorch peer, torch with CUDA. genjax also needs ml_collections, which GPU
# images often lack; packages missing are installed from the wheels in $WHEELS (default .whl/)
# if present, else from PyPI if it can be reached. On a machine without network, bring them:
#   pip download --no-deps --only-binary=:all: -d .whl ml_collections==1.1.0
# Without torch the suite still runs, genjax only (the peer columns stay empty). Fashion-MNIST
# (input pipeline) is read from GENJAX_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist;
# where it is missing the pipeline is measured on random data of the same shape.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
dry=0
for arg in "$@"; do
  [[ $arg == --dry-run ]] && dry=1
done

has() { "$PY" -c "import $1" >/dev/null 2>&1; }

# ensure MODULE PIP_NAME [optional]: installs PIP_NAME if MODULE cannot be imported.
ensure() {
  has "$1" && return 0
  echo "gpu.sh: installing $2" >&2
  if compgen -G "$WHEELS/*.whl" >/dev/null &&
     "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$2" 2>/dev/null; then
    return 0
  fi
  "$PY" -m pip install -q "$2" 2>/dev/null && return 0
  if [[ ${3:-} == optional ]]; then
    echo "gpu.sh: $2 unavailable; continuing without it" >&2
    return 0
  fi
  echo "gpu.sh: cannot install $2: put its wheel in $WHEELS/ (see this script's header)" >&2
  exit 1
}

ensure ml_collections ml_collections
ensure torch torch optional
"$PY" - <<'EOF'
import sys
import flax, jax
need = (0, 12, 8)
have = tuple(int(p) for p in flax.__version__.split(".")[:3] if p.isdigit())
if have < need:
  sys.exit(f"gpu.sh: flax {flax.__version__} is older than 0.12.8; bring a newer wheel")
print(f"gpu.sh: jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}),"
      f" flax {flax.__version__}", file=sys.stderr)
EOF

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and PyTorch share the GPU
if (( dry )); then
  JAX_PLATFORMS=cpu exec "$PY" -m benchmarks.run --models dcgan64 "$@"
fi
# GPU steps take milliseconds: more timed steps cost little and steady the medians.
exec "$PY" -m benchmarks.run --suite default --steps 100 --warmup 10 --block 10 "$@"
