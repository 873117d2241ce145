# The two commands of the README.  Both set up .venv first (fast when nothing changed).
.PHONY: lab class test test-fast setup constraints

PORT ?= 5006

# this machine only: the page and its websocket answer on localhost
lab:
	@scripts/bootstrap.sh
	.venv/bin/panel serve app --port $(PORT) --address 127.0.0.1 --setup app/warm_start.py \
	  --allow-websocket-origin=localhost:$(PORT) --allow-websocket-origin=127.0.0.1:$(PORT) \
	  --unused-session-lifetime 2000 --check-unused-sessions 1000

# a class on the network: make class ORIGIN=host:port [AUTH=users.json or password] [MAX_RUNS=n]
#   [EXECUTOR=process (default) or thread] [DASK_SCHEDULER=tcp://host:8786: each run a task on that cluster]
#   [MAX_SITES=n MAX_SAMPLES=n MAX_PARAMETERS=n: per-session limits, or none; defaults in app/limits.py]
# (scripts/serve_class.sh; ORIGIN, AUTH, PORT, ADDRESS, MAX_UPLOAD_MB reach it as environment
# variables, so a password is never echoed here)
class:
	@scripts/bootstrap.sh
	@NQS_MAX_RUNS="$${MAX_RUNS:-$${NQS_MAX_RUNS:-}}" NQS_EXECUTOR="$${EXECUTOR:-$${NQS_EXECUTOR:-}}" \
	  NQS_DASK_SCHEDULER="$${DASK_SCHEDULER:-$${NQS_DASK_SCHEDULER:-}}" \
	  NQS_MAX_SITES="$${MAX_SITES:-$${NQS_MAX_SITES:-}}" NQS_MAX_SAMPLES="$${MAX_SAMPLES:-$${NQS_MAX_SAMPLES:-}}" \
	  NQS_MAX_PARAMETERS="$${MAX_PARAMETERS:-$${NQS_MAX_PARAMETERS:-}}" scripts/serve_class.sh

test:
	@scripts/bootstrap.sh --test
	.venv/bin/python -m pytest

test-fast:
	@scripts/bootstrap.sh --test
	.venv/bin/python -m pytest -m "not accuracy and not browser"

setup:
	@scripts/bootstrap.sh --test

# Refresh constraints.txt from .venv after upgrading a package in it (e.g. .venv/bin/pip install -U jax),
# then run `make test` before committing the new file.
constraints:
	@scripts/bootstrap.sh --test
	.venv/bin/python scripts/freeze_constraints.py > constraints.txt.new
	mv constraints.txt.new constraints.txt
