# The two commands of the README.  Both set up .venv first (fast when nothing changed).
.PHONY: lab test test-fast setup constraints

PORT ?= 5006

lab:
	@scripts/bootstrap.sh
	.venv/bin/panel serve app --port $(PORT) --address 0.0.0.0 --allow-websocket-origin='*' \
	  --unused-session-lifetime 2000 --check-unused-sessions 1000

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
