# The README's two commands: `make up` (the main job) and `make test` (every test).
# Both start with `setup`, which is idempotent: Debian packages, the OPA evaluator wheel
# in its own step (it declares Python>=3.14 but runs on 3.11), then this project.
PYTHON ?= python3
DEBS := postgresql-client pgbouncer openssh-server openssh-client nginx-light wrk curl git
export ORDERS_DB_PASSWORD ?= portcullis-dev-app
export BILLING_TOKEN ?= portcullis-dev-billing

.PHONY: setup up test lint stubs bench-pdp

setup:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(PYTHON) -m pip install -q --ignore-requires-python opa-golib-python-bindings==0.4.4
	$(PYTHON) -m pip install -q -e '.[dev]'

up: setup
	portcullis -c portcullis.yaml up

test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
	portcullis policy test rego/ --threshold 90
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

stubs:
	$(PYTHON) -m pdp.protogen

bench-pdp:
	$(PYTHON) bench/pdp/bench_decide.py
