# The two set-up commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test install bench clean

demo: install
	$(VENV)/bin/rlpf score --examples --out runs/demo/report.json

test: install
	$(PY) -m pytest -q tests

install: $(VENV)/.installed

# torch first, pinned: anything that lets pip resolve torch itself pulls GBs of CUDA wheels
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,video]"
	touch $@

bench: install
	$(PY) experiments/benchmark_scoring.py
	$(PY) experiments/benchmark_tracking.py

clean:
	rm -rf runs build *.egg-info
