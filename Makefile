# hitl-gate: the two set-up commands are `make demo` and `make test`; each creates the
# environment from the lock file first, so a fresh machine needs only Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed
BYTECODE := $(VENV)/.compiled

.PHONY: install demo test test-fast lint ui mlflow-ui reports lock validate clean dagster-home bench portal

install: $(STAMP) $(BYTECODE)

# Rebuilt when the lock file or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# The environment's modules compiled once: with PYTHONDONTWRITEBYTECODE set (some shells and CI
# images set it) Python never caches bytecode, so every process (each test worker, each Dagster
# step) compiled Dagster, Feast, pandas... from source again (about 10 s of CPU per worker).
$(BYTECODE): $(STAMP)
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib || echo "(files listed above did not compile; Python compiles them on import)"
	@touch $(BYTECODE)

# The tests' own processes keep bytecode caches of the checkout's modules and of pytest's
# rewritten test modules (in __pycache__/, ignored by git) whatever the shell says.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

demo: install
	$(BIN)/hitl demo

# Tests run in random order (pytest-randomly prints its seed; `--randomly-seed=N` repeats an order,
# `-p no:randomly` turns it off) on TEST_WORKERS processes (pytest-xdist); the tests restoring one
# built home run on one worker (`--dist loadgroup`, see tests/e2e/conftest.py).
TEST_WORKERS ?= auto

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PYTEST) -q -n $(TEST_WORKERS) --dist loadgroup --durations=20

# Unit and asset tests: no demo, no job runs; no property suites, attack corpora, model
# training, Feast stores, Great Expectations runs or subprocesses (marked `slow`), nor the
# tests measured slow (tests/slow_tests.txt). `make test` runs everything.
test-fast: install
	$(PYTEST) -q -n $(TEST_WORKERS) -m "not e2e and not slow"

# The type checker's settings (packages, strict core) are in pyproject.toml's [tool.mypy].
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The home the CLI uses: HITL_HOME (environment or `make ui HITL_HOME=...`), else .hitl/. Its
# Dagster instance is `<home>/dagster` (hitl_gate/core/home.py), the one `hitl` runs land in.
HITL_STATE := $(if $(HITL_HOME),$(abspath $(HITL_HOME)),$(CURDIR)/.hitl)
HITL_ENV   := DAGSTER_HOME=$(HITL_STATE)/dagster $(if $(HITL_HOME),HITL_HOME=$(HITL_STATE))
REPORTS_PORT ?= 8766

# The Dagster home the CLI and the UI share, telemetry off (the deployment is offline).
dagster-home:
	@mkdir -p $(HITL_STATE)/dagster && test -f $(HITL_STATE)/dagster/dagster.yaml || printf 'telemetry:\n  enabled: false\nnux:\n  enabled: false\n' > $(HITL_STATE)/dagster/dagster.yaml

ui: install dagster-home
	$(HITL_ENV) $(BIN)/dagster dev -w workspace.yaml

# The operations reports over http, so Dagster metadata can link to them: run `hitl` with
# HITL_REPORTS_URL=http://127.0.0.1:$(REPORTS_PORT) (docs/observability.md).
reports:
	$(BIN)/python -m http.server $(REPORTS_PORT) --bind 127.0.0.1 --directory $(HITL_STATE)/reports

# The review portal on http://127.0.0.1:8765/ (docs/portal.md): sign-in, queue, cases, verdicts.
portal: install
	$(BIN)/hitl portal serve

# MLflow's UI on the home's tracking store (HITL_HOME, default .hitl/), on this machine only and
# with telemetry off (no network), one worker (one reader). MLflow 3 opens on its GenAI view: the
# printed address asks for the classic ML one (models, experiments, runs); see docs/model.md.
MLFLOW_PORT ?= 5000
MLFLOW_STORE = $(HITL_STATE)/mlflow
mlflow-ui: install
	@test -f $(MLFLOW_STORE)/mlflow.db || { echo "no MLflow store in $(MLFLOW_STORE): run make demo (or set HITL_HOME)"; exit 1; }
	@echo "MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning"
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true $(BIN)/mlflow server --host 127.0.0.1 \
	  --port $(MLFLOW_PORT) --workers 1 --backend-store-uri sqlite:///$(abspath $(MLFLOW_STORE))/mlflow.db \
	  --default-artifact-root $(abspath $(MLFLOW_STORE))/artifacts

validate: install dagster-home
	$(HITL_ENV) $(BIN)/dagster definitions validate -w workspace.yaml

# The daily pipeline vs a hand-written baseline at 100k and 1M cases; appends to BENCHMARKS.md.
BENCH_ROWS ?= 100000 1000000
BENCH_REPEATS ?= 3
bench: install
	$(BIN)/python -m bench pipeline --rows $(BENCH_ROWS) --repeats $(BENCH_REPEATS)

# Re-resolve the pinned set (needs network); commit requirements.lock afterwards.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf .hitl data/landing review_exports/batches review_exports/inbox review_exports/archive
