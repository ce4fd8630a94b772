# The README's two commands: `make up` (the main job) and `make test` (every test).
# Both start with `setup`, which is idempotent: Debian packages, the OPA evaluator wheel
# in its own step (it declares Python>=3.14 but runs on 3.11), then this project.
PYTHON ?= python3
DEBS := postgresql-client pgbouncer openssh-server openssh-client nginx-light wrk curl git chromium systemd-journal-remote tmux pinentry-curses vim whiptail dialog strace
# dev secrets, random-looking like real ones: a word the proxies write themselves
# ("portcullis: denied ...") inside a credential is a piece of it the HTTP guard cuts
export ORDERS_DB_PASSWORD ?= dev-app-5c1e8f0b93d7
export BILLING_TOKEN ?= dev-billing-a94d27e6b1f3

.PHONY: setup up demo-db test lint stubs bench-pdp bench-postgres bench-http bench-ssh

setup:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(PYTHON) -m pip install -q --ignore-requires-python opa-golib-python-bindings==0.4.4
	$(PYTHON) -m pip install -q -e '.[dev]'
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	@# the Node.js drivers of the client matrix (tests/test_pg_clients.py), pinned by the lock file
	@[ tests/clients/node_modules/.package-lock.json -nt tests/clients/package-lock.json ] || \
	  npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error

up: setup demo-db
	portcullis -c portcullis.yaml up

# The example connection orders-db: role `app` and database `orders` on the local server,
# with a little data (idempotent; skipped with a note when no server answers).
demo-db:
	@if psql -h 127.0.0.1 -U postgres -d postgres -qAtXc 'select 1' >/dev/null 2>&1; then \
	  psql -h 127.0.0.1 -U postgres -d postgres -qAtX \
	    -c "DO \$$\$$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app LOGIN; END IF; END\$$\$$" \
	    -c "ALTER ROLE app PASSWORD '$$ORDERS_DB_PASSWORD'" >/dev/null; \
	  psql -h 127.0.0.1 -U postgres -d postgres -qAtXc "select 1 from pg_database where datname = 'orders'" | grep -q 1 || \
	    psql -h 127.0.0.1 -U postgres -d postgres -qAtXc "CREATE DATABASE orders OWNER app"; \
	  PGOPTIONS="-c client_min_messages=warning" psql -h 127.0.0.1 -U app -d orders -qAtX \
	    -f deploy/demo/orders.sql >/dev/null; \
	else echo "no PostgreSQL on 127.0.0.1:5432: orders-db will refuse sessions"; fi

# pytest runs three workers on the two cores (pytest-xdist), a test file's tests on one
# worker: every test makes its own databases, roles, ports and servers, so files do not
# share state. Three, not one per core: a worker spends much of its time waiting (on
# PostgreSQL, on the processes it starts: sshd, PDPs, proxies, clients; on timers), so two
# left the cores idle part of the run.
# Files go out heaviest first (tests/conftest.py orders them; xdist's own reordering by
# test count is off), so no heavy file starts when the other worker is nearly done.
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
	portcullis policy test rego/ --threshold 90
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=25 -n 3 --dist loadfile --no-loadscope-reorder

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

stubs:
	$(PYTHON) -m pdp.plumbing.protogen

bench-pdp:
	$(PYTHON) bench/pdp/bench_decide.py

bench-postgres:
	$(PYTHON) bench/postgres/bench_pgbench.py

bench-http:
	$(PYTHON) bench/http/bench_wrk.py

bench-ssh:
	$(PYTHON) bench/ssh/bench_ssh.py
