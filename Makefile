# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs danlu, runs the demo on the bundled digits data
#   make test   creates .venv, installs danlu and the test tools, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TORCH  ?= torch==2.13.0

.PHONY: demo test test-fast lint install bench clean

# The demo needs danlu and a few small packages; the tests add their tools (pytest, playwright,
# ray, psycopg2, lightning, transformers, ruff, mypy), which are much larger. Each step says what it installs.
$(VENV)/.demo: pyproject.toml
	@echo "== danlu set-up 1/3: a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@echo "== danlu set-up 2/3: PyTorch ($(TORCH), CPU build when it is on disk)"
	$(PIP) install --progress-bar on $(TORCH)
	@echo "== danlu set-up 3/3: danlu with the demo's packages (scikit-learn, optuna, matplotlib, starlette)"
	$(PIP) install --progress-bar on -e '.[examples,study,ui,plots]'
	touch $@

$(VENV)/.installed: $(VENV)/.demo
	@echo "== danlu set-up: the test and development tools (pytest, playwright, ray, psycopg, lightning, transformers, tensorboard, jupyter kernel, ruff, mypy)"
	$(PIP) install --progress-bar on -e '.[dev,examples,study,ui,plots]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.demo
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
