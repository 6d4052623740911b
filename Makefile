# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs danlu, runs the demo on the bundled digits data
#   make test   creates .venv, installs danlu and the test tools, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TORCH  ?= torch==2.13.0

.PHONY: demo test test-fast lint install bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev,examples,study,ui,plots]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/danlu demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/log_overhead.py

clean:
	rm -rf $(VENV) .danlu .pytest_cache
