# gitraft: `make run` starts a local cluster, `make test` runs the tests.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export GRPC_VERBOSITY ?= ERROR

.PHONY: all venv test test-fast lint proto run chaos bench clean deploy-tools

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

venv: $(STAMP)

# Two pytest-xdist workers, one test file per worker at a time (a module's shared
# cluster stays in one worker); each worker takes its own slice of test ports
# (tests/conftest.py). Most tests wait on timers and child processes, so two workers
# fit in 2 cores. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP) deploy-tools
	$(BIN)/python -m pytest -q -m 'not slow' -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The deploy tests need promtool + prometheus (Debian's `prometheus` package) and
# docker-compose (Debian's 1.29, which validates a compose file without an engine).
# Installed when missing (needs root and Debian's mirror, as in CI); never skipped.
# RUNLEVEL=1: the package's init script must not start a Prometheus daemon here.
deploy-tools:
	@missing=""; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt-get)"; \
		apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

proto: $(STAMP)
	$(BIN)/python proto/generate.py

# A whole local cluster in the foreground (data under ./.gitraft, loopback only).
run: $(STAMP)
	$(BIN)/gitraft dev --data-dir ./.gitraft

# Long fault-injection runs (the `slow` chaos tests). CHAOS_SECONDS: length of the
# harness run with every nemesis (default 300); CHAOS_SEED: its seed (the same seed
# replays the same nemesis schedule).
CHAOS_SECONDS ?= 300
chaos: $(STAMP)
	CHAOS_SECONDS=$(CHAOS_SECONDS) $(if $(CHAOS_SEED),CHAOS_SEED=$(CHAOS_SEED)) \
		$(BIN)/python -m pytest -q -s -m slow tests/chaos $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
