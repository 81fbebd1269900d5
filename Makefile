# Quickstart targets. `make demo` bootstraps .venv (uv when available, else pip) and runs the
# demo pipeline; `make test` runs the suite. Both work on a fresh clone with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup bench clean dagster

$(BIN)/cdp: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	@$(BIN)/uv pip install -q -p $(BIN)/python -e ".[test]"
	@touch $(BIN)/cdp

setup: $(BIN)/cdp

demo: setup
	$(BIN)/cdp demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/cdp bench --people 10000

dagster: setup
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf data dbt_project/target dbt_project/logs
