# make demo: set up .venv if missing, run the default search on digits, print the report.
# make test: set up .venv if missing, lint and format check (ruff), run the test suite (the import-layer contract included).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NAS    := $(VENV)/bin/nas
STAMP  := $(VENV)/.lightnas-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,ray]"
	@touch $(STAMP)

demo: $(STAMP)
	$(NAS) search --dataset digits --out results/digits-demo --seed 0 --workers 2 --time-budget 4m --resume
	$(NAS) report results/digits-demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600

# Benchmarks are not part of the test run; each writes bench/results_*.md, merged into bench/RESULTS.md.
bench: $(STAMP)
	$(PY) -m bench.bench_optimizer
	$(PY) -m bench.bench_batch
	$(PY) -m bench.bench_search
	$(PY) -m bench.bench_trainer
	$(PY) -m bench.bench_denormal
	$(PY) -m bench.bench_parallel
	$(PY) -m bench.bench_multifidelity --seeds 2 --budgets 10 30  # ours' GP makes the full 10 seeds x 3 budgets hours long
	$(PY) -m bench.bench_lr_ranges
	$(PY) -m bench.collect

clean:
	rm -rf results/digits-demo .pytest_cache
