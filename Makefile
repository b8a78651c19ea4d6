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

# Debian tools the tests use, installed when missing; without apt (not Debian/Ubuntu) the tests that
# need one skip and say why. $(call apt_tool,command,package)
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)
apt_tool = @command -v $(1) >/dev/null || { \
  if command -v apt-get >/dev/null; then \
    $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(2); \
  else echo "apt-get unavailable: tests that need $(1) will be skipped"; fi; }

# Debian's prometheus package gives promtool (alert-rule tests) and the server the scrape test runs.
promtool:
	$(call apt_tool,promtool,prometheus)

# Debian's nghttp2-client gives h2load, the C load generator bench/serve_latency.py measures gRPC with.
h2load:
	$(call apt_tool,h2load,nghttp2-client)

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
