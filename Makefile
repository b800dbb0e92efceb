# The two commands: `make run` serves on SQLite, `make test` runs every check.
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint browser nginx clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/waitress-serve --listen=127.0.0.1:$(PORT) wsgi:application

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

# One worker per core; a test file stays on one worker, so a module's shared shop is
# built once (--dist loadfile). `.venv/bin/pytest tests/...` runs a part serially.
test: lint browser nginx
	$(BIN)/pytest -n auto --dist loadfile

# Debian's Chromium, which the browser test drives (Playwright downloads no browser);
# where it cannot be installed that test skips, except in CI, where it fails.
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "make: could not install chromium: the browser test will skip" >&2

# Debian's nginx, the gateway of the split test (tests/e2e/test_split.py runs it with
# deploy/nginx/microshop.conf); nginx-light where Debian still has it. The test starts its
# own nginx, not the package's service. Without nginx that test skips, except in CI.
nginx:
	@test -x /usr/sbin/nginx || (apt-get update -qq \
		&& (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light \
			|| DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx)) \
		|| echo "make: could not install nginx: the split test will skip" >&2

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .import_linter_cache

# The benchmark of issue #11 (docs/performance.md): the peers' packages, Debian's wrk if
# it is missing, then every case; BENCH_ARGS passes options, e.g. "--cases order_read".
.PHONY: bench

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || (apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
