# The two set-up commands of the README: `make demo` and `make test` (every test: what CI runs).
# While editing, `make test-fast` runs the tests not marked slow (no end-to-end training runs).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test test-fast install bench experiments clean

# the main job: data -> pretraining -> trackers -> RLPF -> before/after report, in runs/quickstart
demo: install
	$(VENV)/bin/rlpf train --config experiments/configs/rlpf_ant.yaml --out runs/quickstart

# the baselines and ablations of the README's table (each reuses the cached base model and trackers)
experiments: install
	for c in base_ant sft_filter_ant rlpf_ant rlpf_ant_in_turn rlpf_ant_no_alignment rlpf_ant_no_kl rlpf_ant_no_alignment_no_kl rlpf_ant_learned_reward; do \
	  $(VENV)/bin/rlpf train --config experiments/configs/$$c.yaml --quiet --out runs/$$(echo $$c | tr _ -) || exit 1; done
	$(PY) experiments/rlpf_table.py

test: install
	$(PY) -m pytest -q tests

# the quick loop for editing: `-m "not slow"` leaves out the end-to-end training runs (setup.cfg markers)
test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

install: $(VENV)/.installed

# torch first, pinned: anything that lets pip resolve torch itself pulls GBs of CUDA wheels
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	@# mujoco 4.0.0 (the old pin) came with mujoco-core / mujoco-studio, whose plugins break 3.3.0 when left behind
	-$(PY) -m pip uninstall -q -y mujoco-core mujoco-studio 2>/dev/null
	$(PY) -m pip install -q -e ".[dev,video,ray]"
	touch $@

bench: install
	$(PY) experiments/benchmark_scoring.py
	$(PY) experiments/benchmark_tracking.py

clean:
	rm -rf runs build *.egg-info
