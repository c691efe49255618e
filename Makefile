# Two commands: `make demo` (the whole pipeline on configs/tiny.yaml, offline, CPU) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/tiny.yaml
RUNS_DIR ?= runs

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test setup clean

setup: $(STAMP)

# torch first and alone: `torch==2.13.0` resolves to the CPU build on a CPU machine, so nothing
# afterwards pulls CUDA packages (2.13.0 already satisfies every later requirement).
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.pipeline --config $(CONFIG) --runs-dir $(RUNS_DIR)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(RUNS_DIR)
