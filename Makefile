# Set-up and entry points. `make demo` and `make test` are the README's quickstart:
# each builds .venv inside the checkout on first use (torch 2.13.0 first: on this
# machine kind PyPI serves its standard CUDA build, ~3 GB, which runs on the CPU;
# see ../shared/DEPENDENCIES.md), then runs. Packages go in with uv (from PyPI,
# into the venv pip made): it downloads in parallel and unpacks natively, 56 s
# for the whole pinned set on a fresh machine of this kind where pip took 297 s.
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY)
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
UV_VERSION  ?= 0.13.9

.PHONY: demo test setup tools images e2e lint render bench perf capacity clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) torch==2.13.0
	$(UV) -r requirements.txt -r requirements-dev.txt
	$(UV) --no-deps --no-build-isolation -e .
	$(VENV)/bin/uv pip check --python $(PY)
	@# uv unpacks and builds pyspark's sdist (~600 MB) into a new cache revision on each
	@# install here and keeps the old ones: 63 of them had filled 39 GB and CI's disk.
	$(VENV)/bin/uv cache prune -q
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/avfleet demo

# Go-built tools the tests use (tools/build.sh: Argo's CLI), cached in ~/.cache/avfleet-tools;
# without a go command the tests that need them skip and say so.
tools:
	@if command -v go >/dev/null; then tools/build.sh && tools/build-e2e.sh; else echo "no go command: Go-built tools skipped"; fi

# A real one-node Kubernetes (tests/e2e/cluster.py): containerd, the kubelet, the control plane,
# a pod on it. `make test` runs it too where it can; this runs only it. Needs root and Debian's
# containerd, runc, containernetworking-plugins, umoci and busybox-static (.ci/run installs them).
e2e: $(STAMP) tools images
	$(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

# avfleet's images for the cluster, built without a Docker engine or a registry (debootstrap,
# uv in a chroot, umoci; tests/e2e/images.py), cached in ~/.cache/avfleet-tools/images.
images: $(STAMP)
	$(PY) -m tests.e2e.images

test: $(STAMP) tools
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

# Triton's own load generator (perf_analyzer, built by tools/build.sh) against avfleet's client on
# the local Triton, at 1-8 requests in flight and batch 1-64 (benchmarks/triton_perf.py).
perf: $(STAMP) tools
	$(PY) benchmarks/triton_perf.py

# The growth benchmarks (docs/scaling.md), then the capacity plan computed from their outputs
# (docs/capacity.md, docs/capacity_inputs.json); about 30 minutes on 2 cores.
GROWTH = index_bytes index_growth dataset_growth selection_growth mining_growth train_growth triton_perf
capacity: $(STAMP) tools
	for b in $(GROWTH); do $(PY) benchmarks/$$b.py || exit 1; done
	$(PY) benchmarks/capacity.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src jobs tests benchmarks
	$(VENV)/bin/ruff format --check src jobs tests benchmarks
	$(VENV)/bin/lint-imports

render: $(STAMP)
	$(VENV)/bin/avfleet workflows render --write

bench: $(STAMP)
	$(PY) benchmarks/index_bytes.py
	$(PY) benchmarks/index_throughput.py

clean:
	rm -rf $(VENV) demo-output
