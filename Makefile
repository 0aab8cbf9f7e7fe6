# make demo: set up .venv if missing, run the default search on digits, print the report.
# make test: set up .venv if missing, run the test suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NAS    := $(VENV)/bin/nas
STAMP  := $(VENV)/.lightnas-installed

.PHONY: demo test bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,ray]"
	@touch $(STAMP)

demo: $(STAMP)
	$(NAS) search --dataset digits --out results/digits-demo --seed 0 --workers 2 --time-budget 4m --resume
	$(NAS) report results/digits-demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf results/digits-demo .pytest_cache
