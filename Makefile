# Two entry points that work on a fresh machine with nothing but Python 3.10+:
#   make demo   install into .venv and run the results-page example on built-in data
#   make test   install into .venv (with the test, docs and lint extras), run `make check`
#               (lint, type check, strict docs build), then the whole test suite on one
#               worker per core (CI)
# Others:
#   make test-fast  the quick tests (under a minute on 2 cores), while you work
#   make check      ruff check, mypy, mkdocs build --strict, ruff format --check
#   make docs       build the documentation site into site/ (open site/index.html)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# mkdocs-material prints a banner about MkDocs 2.0 on every build; it is not about us
export NO_MKDOCS_2_WARNING := 1

# The quick tier: package layout, the results page's numbers, formula parsing, summaries,
# input checks, response bootstraps, predictions; no refit bootstraps, lme4 reference
# sweeps, deletion diagnostics or subprocess examples. `make test` runs these too.
FAST_TESTS := tests/test_layout.py tests/test_results_page.py tests/test_formula.py \
	tests/test_summary_formula.py tests/test_bootstrap.py tests/test_bad_input.py \
	tests/test_predict_labels.py

.PHONY: demo test test-fast check lint typecheck docs format-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# demo needs the package only; everything else also needs the test, docs and lint extras
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,docs,lint]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/01_results_page.py

# One worker per core (pytest-xdist), each test file on one worker, so that a module's
# fixtures and compiled functions are built once: 25 instead of 40 minutes on 2 cores
# (benchmarks/RESULTS.md, Test suite). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= auto
test: check
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# format-check runs last: the code base has not had its one `ruff format` pass yet
check: lint typecheck docs format-check

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

format-check: $(VENV)/.installed-dev
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
