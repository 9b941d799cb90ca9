# The two commands README.md promises, plus the cluster on its own. Everything
# runs in the project virtualenv .venv that `install` creates.
.PHONY: test test-pure demo up down install

install:
	deploy/local/install

# Everything: installs what is missing, then runs the whole suite against the
# real local cluster (started and stopped by the test session itself).
test: install
	.venv/bin/python -m pytest

# Only the pure tests (no cluster), in seconds.
test-pure: install
	.venv/bin/python -m pytest -m "not cluster"

up: install
	.venv/bin/python deploy/local/up

down:
	deploy/local/down

# The main job: the demo on the local cluster (see README).
demo: install
	.venv/bin/python deploy/demo/demo.py
