# Two commands on a fresh machine: `make demo` (a short SymPE demo that trains and reports) and
# `make test` (the test suite). Both create .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: demo test install benchmark report docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,experiments]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.demo

# Two pytest workers (pytest-xdist): the suite compiles many small XLA programs on one thread
# each, so it runs about 1.7x faster on 2 cores; --durations lists the slowest tests in the log.
test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 tests

benchmark: $(STAMP)
	$(PY) -m benchmarks.canonicalization

# Rewrites the generated result tables of README.md and docs/*.md from results/ (--check: verify only).
report: $(STAMP)
	$(PY) -m experiments.report

# The API reference, HTML from the docstrings (pdoc), into docs/api/ (kept out of git by its own .gitignore).
docs: $(STAMP)
	$(PY) -m pdoc -o docs/api sympe_jax
	printf '*\n' > docs/api/.gitignore

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache .hypothesis
