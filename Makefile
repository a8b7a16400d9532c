# One task runner for people and CI. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test check lint format typecheck unit services postgres browser bench bench-pipeline bench-finder bench-plans bench-sdk bench-automations clean docs js js-test

run: $(INSTALLED)
	$(VENV)/bin/cairn serve

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet -e sdks/python
	rm -f $(VENV)/.installed-*
	touch $@

test: $(INSTALLED) services check js-test
	$(PY) -m pytest

check: lint typecheck

lint: $(INSTALLED)
	$(VENV)/bin/ruff check src tests bench sdks/python
	$(VENV)/bin/ruff format --check src tests bench sdks/python

format: $(INSTALLED)
	$(VENV)/bin/ruff format src tests bench sdks/python
	$(VENV)/bin/ruff check --fix src tests bench sdks/python

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

unit: $(INSTALLED)
	$(PY) -m pytest -m "not e2e and not browser"

services: postgres browser

postgres:
	bash scripts/ensure-postgres.sh

browser:
	bash scripts/ensure-chromium.sh

docs: $(INSTALLED)
	$(VENV)/bin/cairn settings --markdown > docs/settings.md

bench: $(INSTALLED) postgres
	$(PY) bench/ingest.py
	$(PY) bench/pipeline.py
	$(PY) bench/finder.py
	$(PY) bench/plans.py

bench-pipeline: $(INSTALLED) postgres
	$(PY) bench/pipeline.py

bench-finder: $(INSTALLED) postgres
	$(PY) bench/finder.py

bench-plans: $(INSTALLED)
	$(PY) bench/plans.py

bench-sdk: $(INSTALLED)
	$(PY) bench/sdk.py

bench-automations: $(INSTALLED)
	$(PY) bench/automations.py

# The browser SDK (sdks/js): Node only here; the built cairn.js is committed, so installing Cairn
# needs none. npm ci installs exactly the lock file, again whenever the lock file changes.
JS := sdks/js
JS_DEPS := $(JS)/node_modules/.package-lock.json

$(JS_DEPS): $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund

js: $(JS_DEPS)
	cd $(JS) && node scripts/build.mjs && node scripts/size.mjs

js-test: $(JS_DEPS)
	cd $(JS) && npx tsc --noEmit && npx vitest run && node scripts/size.mjs

clean:
	rm -rf $(VENV) cairn-data bench/.data .pytest_cache .mypy_cache .ruff_cache $(JS)/node_modules
