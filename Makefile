# Tollgate — `make run` serves a seeded demo on 127.0.0.1:8000; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
export PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)

.PHONY: install run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_catalog
	$(PY) manage.py seed_demo
	$(PY) -m daphne -v 1 -b $(HOST) -p $(PORT) config.asgi:application

test: install
	$(PY) -m $(if $(COVERAGE),coverage run -m )pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: install
	bash bench/run.sh

clean:
	rm -rf $(VENV) var staticfiles
