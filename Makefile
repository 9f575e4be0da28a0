# Two entry points, each doing its own set-up idempotently:
#   make toy   rerun the published toy experiment into results/toy/
#   make test  run the test suite on NumPy 2.x and on NumPy 1.26
PYTHON ?= python3
PIP_ENV = PIP_CONSTRAINT=constraints.txt PIP_BUILD_CONSTRAINT=constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1

VENV := .venv
VENV_NP1 := .venv-numpy1

.PHONY: setup toy test test-numpy2 test-numpy1 benchmark

setup: $(VENV)/.installed

# Each venv is rebuilt only when the files that define it change.
$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(VENV)/bin/pip install -q -r requirements.txt 'numpy>=2'
	touch $@

$(VENV_NP1)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV_NP1)
	$(PIP_ENV) $(VENV_NP1)/bin/pip install -q -r requirements.txt 'numpy==1.26.*'
	touch $@

toy: $(VENV)/.installed
	$(VENV)/bin/python toy/mdn.py $(ARGS)

test: test-numpy2 test-numpy1

test-numpy2: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q tests $(ARGS)

test-numpy1: $(VENV_NP1)/.installed
	$(VENV_NP1)/bin/python -m pytest -q tests $(ARGS)

benchmark: $(VENV)/.installed
	$(VENV)/bin/python experiments/benchmark.py $(ARGS)
