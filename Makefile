# The two commands README.md promises (demo, test), the tiers, the gates and
# the lock. Everything runs in the project virtualenv .venv, built from
# requirements.lock by deploy/local/venv.
.PHONY: demo test test-unit test-tools test-cluster test-latest lint lock venv install up down

# Python only, from the lock: what the unit tier and the gates need.
venv:
	deploy/local/venv

# Everything: apt packages, the cluster's Go builds (cached), then venv.
install:
	deploy/local/install

# The gates CI runs first: ruff, mypy on scaler/, the layer contracts, and
# every tier's test files import (a cluster test's broken import fails here in
# seconds, not after the cluster is built).
lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache
	.venv/bin/python -m pytest --collect-only -q -p no:cacheprovider > /dev/null

# Every tier: the unit tier first on both cores (fails fast, in about a
# minute), then the tools and the real local cluster on two workers, each
# starting and stopping its own cluster (a file's tests stay on one worker).
test: install
	.venv/bin/python -m pytest tests/unit --timeout 10 -q -n 2
	.venv/bin/python -m pytest tests/tools tests/cluster -n 2 --dist loadfile

# Python only, no cluster, no helm or promtool; 10 s per test at most; on
# both cores (pytest-xdist).
test-unit: venv
	.venv/bin/python -m pytest tests/unit --timeout 10 -q -n 2

test-tools: install
	.venv/bin/python -m pytest tests/tools

test-cluster: install
	.venv/bin/python -m pytest tests/cluster

# The unit tier against the newest versions pyproject.toml's ranges allow
# (no lock), in .venv-latest: tells whether the ranges still hold.
test-latest:
	VENV=.venv-latest deploy/local/venv --latest
	.venv-latest/bin/python -m pytest tests/unit --timeout 10 -q -n 2 -p no:cacheprovider

# Re-resolve requirements.lock from pyproject.toml (pip-tools, pinned here).
lock:
	python3 -m venv .venv-tools
	.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.7.0
	.venv-tools/bin/pip-compile --quiet --extra test --extra chart --extra lint --all-build-deps \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  -o requirements.lock pyproject.toml

up: install
	.venv/bin/python deploy/local/up

down:
	deploy/local/down

# The main job: the demo on the local cluster (see README).
demo: install
	.venv/bin/python deploy/demo/demo.py
