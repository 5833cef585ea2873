# streamrec — `make help` lists the targets. The two set-up commands for a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SRC := contracts streams model feature_store explain streamrec tests bench
PYTEST_ARGS ?=

.PHONY: help venv test test-unit test-integration lint fmt typecheck up down status demo bench schemas clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: ## Create .venv and install everything (shared, cached dependency env under ~/.cache/streamrec)
	@bash scripts/bootstrap.sh

test: venv ## Lint, then every test: unit + integration on the real local stack (started by the tests)
	$(PY) -m ruff check $(SRC)
	$(PY) -m pytest -v --durations=20 --junitxml=test-artifacts/junit.xml $(PYTEST_ARGS)

test-unit: venv ## Unit tests only (no services)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv ## Integration tests only (real Kafka + Redis)
	$(PY) -m pytest tests/integration -v $(PYTEST_ARGS)

lint: venv ## ruff lint + format check + mypy
	$(PY) -m ruff check $(SRC)
	$(PY) -m ruff format --check $(SRC)
	$(PY) -m mypy

fmt: venv ## Format the code
	$(PY) -m ruff format $(SRC)
	$(PY) -m ruff check --fix $(SRC)

up: venv ## Start the local stack (Kafka KRaft broker + Redis) on loopback
	$(VENV)/bin/streamrec stack up

down: venv ## Stop the local stack
	$(VENV)/bin/streamrec stack down

status: venv ## Show what runs where
	$(VENV)/bin/streamrec stack status

schemas: venv ## Regenerate schemas/*.json from contracts/
	$(VENV)/bin/streamrec schemas

demo: venv ## The main job: live, explained recommendations on a replayed stream (QUICK=1 for a short run)
	@bash scripts/demo.sh

bench: venv ## Run every benchmark in bench/
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove this clone's .venv and caches (the shared dependency env stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts
