# `make demo` and `make test` set everything up on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: setup demo test bench lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet $(TORCH) -e '.[dev]'
	touch $@

demo: setup
	$(PYTHON) -m rnnkit demo

# One process per core (pytest-xdist); a worker that runs out of tests takes some from another.
test: setup
	$(PYTHON) -m pytest -q -n auto --dist worksteal --durations=10

bench: setup
	$(PYTHON) benchmarks/cpu.py

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: setup
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
