# The two commands a newcomer needs (see README.md):
#   make demo   - set everything up, then run a whole simulated VR class end to end
#   make test   - set everything up, then lint, type-check, check layers and run the tests
# Both install what they need themselves (as root on Debian 12/13): PostgreSQL + TimescaleDB
# from Debian's packages, then a virtual environment in .venv with this package editable.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: demo test system venv lint typecheck layers pytest bench clean

demo: system venv
	$(BIN)/labctl demo $(DEMO_ARGS)

test: system venv lint typecheck layers pytest

system:
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3-venv missing: installing it"; apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@echo "[venv] installing the package and its dependencies into $(VENV)"
	@$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | grep -v -i -E "^\s*(!!|\*+|warning)" || true
	@$(BIN)/python -c "import lab_controller, sim_kernels, telemetry, devices, dashboards" 
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	@echo "[lint] ruff"
	@$(BIN)/ruff check lab_controller sim_kernels telemetry devices dashboards tests benchmarks scripts

typecheck: venv
	@echo "[typecheck] mypy --strict on the packages"
	@$(BIN)/mypy

layers: venv
	@echo "[layers] import-linter"
	@$(BIN)/lint-imports

pytest: venv
	@echo "[pytest]"
	@bash scripts/run-pytest.sh

bench: system venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
