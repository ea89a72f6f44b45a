# Two commands on a fresh machine: `make demo` (a short SymPE demo that trains and reports) and
# `make test` (the test suite). Both create .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: demo test install benchmark report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,experiments]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/demo.py

test: $(STAMP)
	$(PY) -m pytest tests

benchmark: $(STAMP)
	$(PY) benchmarks/canonicalization.py

report: $(STAMP)
	$(PY) experiments/report.py

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache .hypothesis
