# Two commands set everything up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# The first Python 3.12+ found (a .python-version file makes pyenv's python3 a 3.12 here).
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo $$p; break; fi; done)

.PHONY: run test lint install migrate browser services bench bench-quick clean

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.12 or newer is needed (Django 6 requires it); none was found as python3.13, python3.12 or python3." >&2; \
		echo "       With pyenv: 'pyenv install 3.12' (this repo's .python-version asks for 3.12)." >&2; exit 1; fi
	@echo "Using $$($(PYTHON) --version) at $$(command -v $(PYTHON))"
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
		echo "Removing $(VENV): it was made with an older Python."; rm -rf $(VENV); fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	@$(PY) manage.py ensure_demo_user --host '$(HOST)' --port '$(PORT)'
	@if [ -n "$$ANTHROPIC_API_KEY" ]; then echo "Provider: Anthropic (ANTHROPIC_API_KEY is set)"; \
		else echo "Provider: the offline demo model (set ANTHROPIC_API_KEY to talk to Claude)"; fi
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(VENV)/bin/daphne -b $(HOST) -p $(PORT) chatsite.asgi:application

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

browser:
	@bash .ci/ensure-chromium

services:
	@bash .ci/ensure-services

# pytest on two workers, each test file on one of them (pytest-xdist): the tests mostly wait
# (on daphne, Chromium, the fake's pace), so two keep a 2-core machine busy. A test marked
# `alone` runs while the other worker waits (tests/conftest.py).
test: install browser services
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest -n 2 --dist loadfile

# The benchmark (issue 6): stop and relay latency vs the raw SDK, capacity, database work, memory,
# the 1,000-message page. Prints a table; writes bench/results/bench.json and bench.png.
bench: install services
	$(PY) -m bench.run

bench-quick: install services
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
