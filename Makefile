# Every target sets up .venv on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck unit unit-compiled fuzz sim bench bench-growth bench-restart compile demo chaos sim-demo docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check raftcore adapters tests fuzz bench setup.py
	$(PY) -m ruff format --check raftcore adapters tests fuzz bench setup.py

typecheck: $(STAMP)
	$(PY) -m mypy

unit: $(STAMP)
	$(PY) -m pytest

test: lint typecheck docs unit unit-compiled

# The docs site (mkdocs.yml) in strict mode: a broken link or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest fuzz -x -p no:cacheprovider

sim: $(STAMP)
	$(PY) -m raftcore.sim --seeds 0:200 --nodes 5 --faults all

# The same engine compiled with mypyc, built in its own directory so the
# pure sources stay what `make unit` imports; `unit-compiled` runs the whole
# suite against it (the conftest reports and checks which build ran).
COMPILED := build/compiled
SOURCES  := $(shell find raftcore adapters bench -name '*.py')

compile: $(COMPILED)/.built

$(COMPILED)/.built: $(STAMP) $(SOURCES)
	rm -rf $(COMPILED) && mkdir -p $(COMPILED)
	cp -rL raftcore bench $(COMPILED)/
	cd $(COMPILED) && ../../$(VENV)/bin/mypyc raftcore/engine/*.py raftcore/quorum.py >/dev/null
	touch $@

unit-compiled: $(COMPILED)/.built
	PYTHONPATH=$(abspath $(COMPILED)) RAFTCORE_EXPECT_BUILD=mypyc $(VENV)/bin/pytest -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m bench
	$(MAKE) --no-print-directory compile
	cd $(COMPILED) && ../../$(PY) -m bench
	$(PY) -m bench.cluster_bench
	$(PY) -m bench.stream_bench
	$(MAKE) --no-print-directory bench-growth bench-restart

# 1,000,000 writes with a snapshot every 10,000: throughput and memory must
# not grow with the history (one JSON line; docs/snapshots.md).
bench-growth: $(STAMP)
	$(PY) -m bench.growth_bench

# Restart time of a KV node with 1,000,000 writes in its history.
bench-restart: $(STAMP)
	$(PY) -m bench.restart_bench

# A real 3-process cluster on SQLite: writes, SIGKILL of the leader, failover, catch-up.
demo: $(STAMP)
	$(PY) -m raftcore.adapters.kv.demo

# Jepsen-style faults against a real 3-process cluster behind fault-injecting proxies
# (docs/chaos.md): CHAOS_SECONDS of faults (default 180), CHAOS_SEED (default: random, printed).
chaos: $(STAMP)
	$(PY) -m raftcore.adapters.kv.chaos --seconds $${CHAOS_SECONDS:-180} $${CHAOS_SEED:+--seed $$CHAOS_SEED}

# The narrated simulator run (5 nodes under faults, virtual time).
sim-demo: $(STAMP)
	$(PY) -m raftcore.sim --demo

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis
