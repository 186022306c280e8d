# wrapkit: two commands on a fresh Debian/Ubuntu machine.
#   make demo   - the main job (set-up included)
#   make test   - the test suite (set-up included)
# Everything else (setup, bench, results, rtl) is optional.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages and the file each one provides, checked before installing anything.
APT_PKGS := iverilog yosys z3 opensta qflow-tech-osu018 dataset-fashion-mnist
OSU018 := /usr/share/qflow/tech/osu018/osu018_stdcells.lib
FMNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
PYTEST_ARGS ?=

.PHONY: setup system-tools demo test rtl bench results results-wrapnet bench-wrapnet bench-sweep bench-fedaqt bench-attention bench-dct bench-peers bench-attention-datapath clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   # main job: set-up, then the end-to-end flow"
	@echo "make test   # set-up, then the whole test suite (Icarus and Verilator)"
	@echo "make setup  # system tools (apt-get) + .venv with torch==2.13.0 and wrapkit"
	@echo "make rtl    # regenerate the committed paper MAC designs into rtl/"
	@echo "make bench  # benchmarks (slow sweeps; writes docs/results/)"
	@echo "make results-wrapnet  # WrapNet accuracy table on Fashion-MNIST (about an hour, resumable)"
	@echo "make bench-sweep  # co-design sweep acc_bits x k on the VGG-7 on Ray (1-2 h, resumable)"
	@echo "make bench-fedaqt  # FedAQT tables on Flower: FedSGD, FedAvg, client memory (resumable)"
	@echo "make bench-attention  # TWIST / local attention / integer attention on Fashion-MNIST (resumable)"
	@echo "make bench-dct  # block-DCT inputs, heatmap channels, few-shot, integer DCT stem (resumable)"
	@echo "make bench-peers  # QA / A2Q / A2Q+ / WrapNet vs accumulator width (resumable)"
	@echo "make bench-attention-datapath  # wrapkit estimate of exported attention networks (resumable)"

system-tools:
	@if command -v iverilog >/dev/null && command -v yosys >/dev/null && command -v sta >/dev/null \
	    && command -v z3 >/dev/null && [ -f $(OSU018) ] && [ -f $(FMNIST) ]; then \
	  echo "setup: system tools present"; \
	else \
	  echo "setup: installing $(APT_PKGS) with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS) \
	    || { echo "setup: apt-get failed; install by hand: apt-get install $(APT_PKGS)"; exit 2; }; \
	fi

# torch first with an exact pin: the CPU build is on local disk, a looser pin pulls a CUDA build.
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-tools
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	@touch $(STAMP)

setup: $(STAMP)
	@$(MAKE) --no-print-directory system-tools

demo: setup
	$(BIN)/wrapkit demo

test: setup
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

rtl: setup
	$(BIN)/wrapkit rtl paper --out rtl

bench: setup
	$(BIN)/python benchmarks/run_all.py $(BENCH)

# WrapNet training results (docs/results/wrapnet.md); resumes where it stopped.
results-wrapnet: setup
	$(BIN)/python benchmarks/wrapnet_table.py

# Seconds per training epoch, WrapNet vs float (docs/results/wrapnet_epoch_time.json).
bench-wrapnet: setup
	$(BIN)/python benchmarks/wrapnet_epoch_time.py

# Co-design sweep on Ray (docs/sweep.md): accuracy vs energy and area, acc_bits x k, VGG-7.
# Resumable: a rerun skips finished points. Results in docs/results/sweep/acc_bits/.
bench-sweep: setup
	$(BIN)/wrapkit sweep examples/sweeps/acc_bits.toml --out docs/results/sweep/acc_bits

# FedAQT on Fashion-MNIST (docs/results/fedaqt.md); resumes where it stopped.
bench-fedaqt: setup
	$(BIN)/python benchmarks/fedaqt.py

# Attention: TWIST, local self-attention, quantized attention (docs/results/attention.md);
# resumes where it stopped.
bench-attention: setup
	$(BIN)/python benchmarks/attention.py

# Block-DCT inputs, heatmap channels, few-shot, the integer DCT stem (docs/results/dct*.md); resumable.
bench-dct: setup
	nice -n 10 $(BIN)/python benchmarks/dct.py
	nice -n 10 $(BIN)/python benchmarks/dct_stem.py
	nice -n 10 $(BIN)/python benchmarks/dct_stem_datapath.py

# Accuracy vs accumulator width for QA, A2Q, A2Q+, WrapNet (docs/results/accumulator_peers.md);
# resumes where it stopped. PEERS_ARGS="--seeds 0 1 2" adds seeds.
bench-peers: setup
	$(BIN)/python benchmarks/accumulator_peers.py $(PEERS_ARGS)

# Attention on the datapath: energy per block and node kind, MACs global vs local
# (docs/results/attention_datapath.md); resumes where it stopped.
bench-attention-datapath: setup
	$(BIN)/python benchmarks/attention_datapath.py

clean:
	rm -rf sim_build .pytest_cache out
