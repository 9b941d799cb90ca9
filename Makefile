# The two commands README.md promises, plus the cluster on its own.
.PHONY: test test-pure demo up down install

install:
	deploy/local/install

# Everything: installs what is missing, then runs the whole suite against the
# real local cluster (started and stopped by the test session itself).
test: install
	python3 -m pytest

# Only the pure tests (no cluster), in seconds.
test-pure:
	python3 -m pytest -m "not cluster"

up: install
	deploy/local/up

down:
	deploy/local/down

# The main job: the demo on the local cluster (see README).
demo: install
	deploy/demo/run
