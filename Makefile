# psanalytics: two commands on a fresh machine with Python 3.11+ and make.
#   make demo   set everything up, run the main job on the embedded default
#   make test   set everything up, run every test (unit, HTTP, notebooks)
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: setup test demo lab lint format bench clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: .venv/.synced

test: setup
	$(RUN) pytest tests $(shell ls notebooks/*.ipynb >/dev/null 2>&1 && echo --nbmake notebooks) -q

demo: setup
	$(RUN) python -m psanalytics.cli demo

lab: setup
	$(RUN) jupyter lab notebooks/

lint: setup
	$(RUN) ruff check psanalytics tests benchmarks

format: setup
	$(RUN) ruff format psanalytics tests benchmarks

clean:
	rm -rf .venv .tools build .pytest_cache
