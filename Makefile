# Every target sets up .venv on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck unit fuzz sim bench compile demo docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check raftcore adapters tests fuzz bench
	$(PY) -m ruff format --check raftcore adapters tests fuzz bench

typecheck: $(STAMP)
	$(PY) -m mypy

unit: $(STAMP)
	$(PY) -m pytest

test: lint typecheck unit

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest fuzz -x -p no:cacheprovider

sim: $(STAMP)
	$(PY) -m raftcore.sim --seeds 0:200 --nodes 5 --faults all

# The pure-Python engine, then the same engine compiled with mypyc (opt-in;
# built in its own directory, so tests always run the pure sources).
COMPILED := build/compiled

compile: $(STAMP)
	rm -rf $(COMPILED) && mkdir -p $(COMPILED)
	cp -r raftcore bench $(COMPILED)/
	cd $(COMPILED) && ../../$(VENV)/bin/mypyc raftcore/engine/*.py raftcore/quorum.py >/dev/null

bench: $(STAMP)
	$(PY) -m bench
	$(MAKE) --no-print-directory compile
	cd $(COMPILED) && ../../$(PY) -m bench

demo: $(STAMP)
	$(PY) -m raftcore.sim --demo

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis
