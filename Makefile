# genjax: the README's commands. `make demo` and `make test` do all the set-up they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test setup data kernels clean

# A virtual environment with genjax and its dependencies (python3-venv comes from Debian if the
# interpreter lacks it).
$(BIN)/.genjax: pyproject.toml
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv python3-pip)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.genjax-test: $(BIN)/.genjax
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.genjax

# Fashion-MNIST, the default dataset, from Debian's dataset-fashion-mnist where it is missing.
data:
	@[ -e $(FASHION_MNIST) ] || ($(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq dataset-fashion-mnist)

# g++ and Debian's oneDNN 2.6 for genjax's CPU convolution kernels (conv_backend 'auto'/'onednn';
# genjax compiles them on first use), from Debian where they are missing. CPUs without AVX-512
# build against oneDNN 3.2 from the wheel onednn-devel-cpu-gomp instead (a dependency in
# pyproject.toml; see genjax/kernels).
kernels:
	@[ -e /usr/include/oneapi/dnnl/dnnl.hpp ] && command -v g++ >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq g++ libdnnl-dev)

# A few minutes of DCGAN on Fashion-MNIST on CPU; the sample grid ends up in runs/demo/samples/.
demo: $(BIN)/.genjax data kernels
	$(BIN)/python -m genjax.cli.train --config=experiments/configs/dcgan_fashion_mnist.py \
	  --workdir=runs/demo --config.num_steps=1000 --config.sample_every=250 \
	  --config.checkpoint_every=250 --config.log_every=50
	@echo "sample grid: runs/demo/samples/samples.png"

# Two pytest workers (pytest-xdist): most of the suite is single-threaded XLA compilation, so two
# workers on two cores take ~2/3 of the serial time; the tests share one XLA compilation cache.
# Work stealing: a worker that runs out takes the other's queued tests, so that the last minutes
# are not one worker alone behind a few long multi-process tests. The log ends with the 25
# slowest tests: where to look when the run nears CI's 30 minutes. Where PYTHONDONTWRITEBYTECODE
# is set, Python never caches genjax's own modules (an editable install) as bytecode: compileall
# does it once, not every test subprocess again (~0.4 s each).
test: $(BIN)/.genjax-test data kernels
	$(BIN)/python -m compileall -q genjax experiments benchmarks tests
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=25

clean:
	rm -rf runs/demo

# The benchmark suite (genjax vs PyTorch: DCGAN-64 b64, DCGAN-32 b64, VAE b128; fp32, and bf16
# where the CPU has bfloat16 instructions) on this machine -> benchmarks/results/ (JSON, markdown,
# README). ~6 min on 2 idle cores; each model first waits (up to 10 min) for other processes to
# leave the CPU quiet.
.PHONY: bench
bench: $(BIN)/.genjax-test data kernels
	$(BIN)/python -m benchmarks.run --suite default --wait-quiet 600
