# Every target does its own set-up on a fresh machine: a virtual environment in .venv,
# the CPU build of torch first (so nothing can pull a CUDA build), then convsvd.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check
OUT    ?= demo-out

.PHONY: demo test test-fast setup setup-test bench clean

$(VENV)/.base: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -e '.[test]'
	bash scripts/install-system-deps.sh chromium fonts-dejavu-core
	touch $@

setup: $(VENV)/.base
setup-test: $(VENV)/.test

demo: $(VENV)/.base
	$(BIN)/convsvd demo --out $(OUT)

test: $(VENV)/.test
	$(BIN)/python -m pytest -n 2 --maxschedchunk 2 -q tests src/convsvd

# The development loop: every test but the ones marked slow (end-to-end, exhaustive reference comparisons), doctests included.
test-fast: $(VENV)/.test
	$(BIN)/python -m pytest -n 2 -q -m "not slow" tests src/convsvd

bench: $(VENV)/.base
	$(BIN)/python benchmarks/decompose.py
	$(BIN)/python benchmarks/features.py
	@echo "peer benchmarks (spectrum, powerlaw_fit, profile_signals) need the peers: bash scripts/install-peers.sh .peers-venv"

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
