# Quickstart targets. `make demo` bootstraps .venv (uv when available, else pip) and runs the
# demo pipeline; `make test` runs the whole suite (CI). Both work on a fresh clone with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# sqlfluff's dbt templater compiles the project against a scratch warehouse, never data/.
LINT_WAREHOUSE := $(CURDIR)/dbt_project/target/lint.duckdb

.PHONY: demo test test-fast lint format setup bench clean dagster

$(BIN)/cdp: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	@# Bytecode compiled at install: with PYTHONDONTWRITEBYTECODE set (as on CI) every process would
	@# otherwise compile pandas, dbt and Dagster from source on import (about 10 s for pandas alone).
	@$(BIN)/uv pip install -q --compile-bytecode -p $(BIN)/python -e ".[test]"
	@touch $(BIN)/cdp

setup: $(BIN)/cdp

demo: setup
	$(BIN)/cdp demo

# Everything, slowest first in the report: unit tests, the end-to-end pipeline runs, dbt unit tests.
# Two workers (TEST_WORKERS): a module's tests stay on one worker, and so do all users of the shared
# pipeline runs (tests/conftest.py's scheduler), so no module fixture and no pipeline run is built twice.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadscope

# The development loop: everything but the end-to-end pipeline runs (marker e2e), in under 2 minutes.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e" --durations=10

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p dbt_project/target
	CDP_WAREHOUSE=$(LINT_WAREHOUSE) $(BIN)/sqlfluff lint dbt_project/models dbt_project/snapshots

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/cdp bench --people 10000

# The Dagster UI and daemon on the same DAGSTER_HOME as `cdp run` (data/dagster unless set).
dagster: setup
	$(BIN)/cdp dagster

clean:
	rm -rf data dbt_project/target dbt_project/logs
