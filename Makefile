# Two commands: `make run` and `make test`. Both create .venv on first use and reinstall
# when pyproject.toml changes, so a fresh clone needs only Python 3.11+, make and git.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SANDBOX_PORT ?= 8090
APP ?=

.PHONY: run test lint typecheck unit bench sandbox clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (found %s); set PYTHON=..." % sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# With a portal configured (B24_WEBHOOK_URL in the environment or .env) the real service;
# with none, the sandbox portal, its chat page (SANDBOX_PORT) and the service wired to it;
# `make run APP=1`: the sandbox in application mode (votes cast as each supervisor).
run: $(STAMP)
	$(BIN)/python -m bot try --sandbox-port $(SANDBOX_PORT)$(if $(filter 1,$(APP)), --app)

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check bot handlers tests
	$(BIN)/ruff format --check bot handlers tests

typecheck: $(STAMP)
	$(BIN)/mypy bot handlers tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks (not part of `make test`): the REST client's limiter against the sandbox portal,
# time-scaled (Bitrix24's 2/s sped up 50 times) and at the real rate; then the whole service
# against the sandbox, fetch and webhook mode side by side: answer latency when idle, idle
# requests, commands per second, event intake, memory; a few minutes.
bench: $(STAMP)
	$(BIN)/python -m tests.bench.bench_limiter
	$(BIN)/python -m tests.bench.bench_limiter --rate 2 --calls 110 --concurrency 10
	$(BIN)/python -m tests.bench.bench_operating
	$(BIN)/python -m tests.bench.bench_modes

# The sandbox portal alone on 127.0.0.1:$(SANDBOX_PORT) (`make sandbox SANDBOX_PORT=8091`); it prints the
# settings to give the service, and the chat page's address.
sandbox: $(STAMP)
	$(BIN)/python -m bot.sandbox --port $(SANDBOX_PORT)

clean:
	rm -rf $(VENV) build *.egg-info
