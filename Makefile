# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IG := $(VENV)/bin/interest-graph
CYPHER_LINT := tests/graph_store/cypher_lint

.PHONY: venv demo test test-fast lint typecheck proto clean promtool h2load

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,text]'
	touch $@

venv: $(VENV)/.installed

$(CYPHER_LINT)/node_modules/.installed: $(CYPHER_LINT)/package.json
	npm ci --prefix $(CYPHER_LINT) --no-audit --no-fund --silent
	touch $@

demo: venv
	$(IG) demo

# Debian's prometheus package gives promtool (alert-rule tests) and the server the scrape test runs.
# Without apt (not Debian/Ubuntu) the tests that need it skip and say why.
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)
promtool:
	@command -v promtool >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends prometheus; \
	  else echo "apt-get unavailable: Prometheus tests will be skipped"; fi; }

# Debian's nghttp2-client gives h2load, the C load generator bench/serve_latency.py measures gRPC with.
h2load:
	@command -v h2load >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends nghttp2-client; \
	  else echo "apt-get unavailable: the benchmark's h2load rows will be skipped"; fi; }

test: venv $(CYPHER_LINT)/node_modules/.installed promtool h2load
	$(PY) -m ruff check .
	$(PY) -m mypy core interest_graph streams graph_store models serving
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not integration"

lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy core interest_graph streams graph_store models serving

# Regenerate the protobuf/gRPC modules from proto/*.proto (generated code is committed, never edited).
proto: venv
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. proto/recommender.proto

clean:
	rm -rf $(VENV) data/demo .pytest_cache
