# One command per job. Everything runs inside .venv, created on first use.
#   make demo                 the whole pipeline on this machine (Ctrl-C to stop)
#   make demo DEMO_ROUNDS=12  ...or a fixed number of rounds, then the report
#   make test                 the test suite (unit + integration against real servers), in 2 processes
#   make bench                throughput benchmark, writes BENCHMARKS.md
#   make soak                 long run with faults injected, prints the audit (not in CI)
#   make mutants              deliberate bugs, one at a time: do the tests notice? (not in CI)
#   make stack                just the local Kafka (29092) and MongoDB (27017)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_ROUNDS ?=
DEMO_INTERVAL ?= 1
# Test processes: the integration tests mostly wait (group joins, sessions, outages),
# so two share even one core well; each has its own Tansu and SecantusDB.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: setup demo test bench soak mutants stack clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Hace falta Python 3.11 o posterior ($(PYTHON) es otro): make PYTHON=python3.11 ..."; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --interval $(DEMO_INTERVAL) $(if $(DEMO_ROUNDS),--rounds $(DEMO_ROUNDS))

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP)
	$(PY) bench/bench.py

soak: $(STAMP)
	$(PY) tools/soak.py

mutants: $(STAMP)
	$(PY) tools/mutants.py

stack: $(STAMP)
	$(PY) tools/local_stack.py

clean:
	rm -rf $(VENV) .demo-data .bench-data .soak-data .local-stack .pytest_cache tools/pyodide/node_modules
