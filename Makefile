# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IG := $(VENV)/bin/interest-graph
CYPHER_LINT := tests/graph_store/cypher_lint

.PHONY: venv demo test test-fast lint typecheck proto clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

$(CYPHER_LINT)/node_modules/.installed: $(CYPHER_LINT)/package.json
	npm ci --prefix $(CYPHER_LINT) --no-audit --no-fund --silent
	touch $@

demo: venv
	$(IG) demo

test: venv $(CYPHER_LINT)/node_modules/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not integration"

lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy interest_graph streams graph_store models serving

# Regenerate the protobuf/gRPC modules from proto/*.proto (generated code is committed, never edited).
proto: venv
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. proto/recommender.proto

clean:
	rm -rf $(VENV) data/demo .pytest_cache
