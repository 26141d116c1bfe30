# Set-up and entry points. `make demo` and `make test` are the README's quickstart:
# each builds .venv inside the checkout on first use (torch 2.13.0 first: on this
# machine kind PyPI serves its standard CUDA build, ~3 GB, which runs on the CPU;
# see ../shared/DEPENDENCIES.md), then runs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test setup lint render bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/avfleet demo

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

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
