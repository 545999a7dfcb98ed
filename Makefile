# psanalytics: two commands on a fresh machine with Python 3.11+ and make.
#   make demo   set everything up, run the main job on the embedded default
#   make test   set everything up, run every test (unit, HTTP, notebooks)
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: setup test test-browser demo lab lint format bench clean

# The notebooks make test / make demo / make test-browser run: the ones git tracks in
# notebooks/ (a scratch notebook lying there is not run). A new notebook is picked up once
# it is committed (git add); outside a git checkout, every notebooks/*.ipynb.
NOTEBOOKS := $(shell git ls-files 'notebooks/*.ipynb' 2>/dev/null || ls notebooks/*.ipynb 2>/dev/null)
CHROMIUM ?= $(shell command -v chromium 2>/dev/null || ls /usr/bin/chromium 2>/dev/null)
# jupyter refuses to run as root without --allow-root
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: .venv/.synced

# Two pytest workers (pytest-xdist), each taking whole files (module fixtures are built
# once): the suite takes about half the wall time on two cores. PYTEST_WORKERS=0 runs it in
# one process.
PYTEST_WORKERS ?= 2
test: setup
	$(RUN) pytest tests $(if $(NOTEBOOKS),--nbmake $(NOTEBOOKS)) -q -n $(PYTEST_WORKERS) --dist loadfile

# JupyterLab in headless Chromium with the network blocked (browser_tests/, not part of
# make test); screenshots in build/screenshots/.
test-browser: setup
	@if [ -z "$(CHROMIUM)" ]; then \
	  echo "make test-browser needs Chromium: install Debian's package with"; \
	  echo "  apt-get install -y chromium      (as root; or set CHROMIUM=/path/to/chromium)"; \
	  exit 2; fi
	CHROMIUM=$(CHROMIUM) $(RUN) pytest browser_tests -q

demo: setup
	$(RUN) python -m psanalytics.cli demo

lab: setup
	$(RUN) jupyter lab notebooks/ $(ROOT_FLAG)

lint: setup
	$(RUN) ruff check psanalytics tests benchmarks

format: setup
	$(RUN) ruff format psanalytics tests benchmarks

clean:
	rm -rf .venv .tools build .pytest_cache
