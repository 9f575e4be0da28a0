# Entry points, each setting itself up idempotently:
#   make toy    rerun the published toy experiment into results/toy/ (in .venv)
#   make test   run the test suite on every supported Python and NumPy series this machine has
#   make test PYTHON=python3.12 [NUMPY=1]   the same on one interpreter (one NumPy series)
#
# One virtual environment per Python version and NumPy series, .venv-<X.Y>-numpy<1|2>; its
# .installed stamp records the interpreter (path and full version) that made it, so a venv is
# rebuilt when requirements.txt, constraints.txt or the interpreter changes, and is never reused
# by another interpreter. .venv links to the venv of PYTHON with NumPy 2.x.
PYTHON ?= python3
NUMPY ?= 2
# Given on the command line: `make test` then runs that interpreter or series alone.
PYTHON_GIVEN := $(filter command line,$(origin PYTHON))
NUMPY_GIVEN := $(filter command line,$(origin NUMPY))

# The supported combinations (pyproject.toml declares the same versions). NumPy 1.26 has
# wheels up to Python 3.12 only; on 3.13 pip would compile it from source.
PYTHON_VERSIONS := 3.11 3.12 3.13
NUMPY1_VERSIONS := 3.11 3.12

NUMPY_SPEC_2 := numpy>=2
NUMPY_SPEC_1 := numpy==1.26.*
NUMPY_SPEC := $(NUMPY_SPEC_$(NUMPY))

# Chainer 7.8.1 is an sdist whose build and import need pkg_resources (setuptools<82).
PIP_ENV = PIP_CONSTRAINT=constraints.txt PIP_BUILD_CONSTRAINT=constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1

# PYTHON=pythonX.Y that does not run (a pyenv shim of a version pyenv does not select, say):
# the Python X.Y that tools/find_python.sh finds through pyenv or on PATH.
PYTHON_RUNS := $(shell $(PYTHON) -c '' 2>/dev/null && echo yes)
ifeq ($(PYTHON_RUNS)$(filter-out python3.%,$(PYTHON)),)
override PYTHON := $(or $(shell bash tools/find_python.sh $(PYTHON:python%=%)),$(PYTHON))
endif

# "<X.Y> <real path> <full version>" of PYTHON, empty where it does not run.
PYID := $(shell $(PYTHON) -c 'import os, sys; print("%d.%d" % sys.version_info[:2], os.path.realpath(sys.executable), sys.version.split()[0])' 2>/dev/null)
VENV := .venv-$(word 1,$(PYID))-numpy$(NUMPY)
STAMP := $(VENV)/.installed

.PHONY: setup venv toy test test-venv benchmark gpu-check FORCE
.DEFAULT_GOAL := setup

# A stamp left by another interpreter (or none) is out of date whatever its time.
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(PYID))
$(STAMP): FORCE
endif

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -n "$(PYID)" || { echo "make: PYTHON=$(PYTHON) does not run; name a Python 3.11, 3.12 or 3.13 interpreter" >&2; exit 2; }
	@test -n "$(NUMPY_SPEC)" || { echo "make: NUMPY=$(NUMPY): use NUMPY=2 (NumPy 2.x) or NUMPY=1 (NumPy 1.26)" >&2; exit 2; }
	$(PYTHON) -m venv --clear $(VENV)
	$(PIP_ENV) $(VENV)/bin/pip install -qq -r requirements.txt '$(NUMPY_SPEC)'
	echo '$(PYID)' > $@

# The environment of PYTHON and NUMPY, without touching .venv (used by `make test`).
venv: $(STAMP)

# .venv, the environment the README's commands use: a link to PYTHON's venv.
# (An .venv directory made by the older Makefile, which had one venv for any interpreter, goes.)
setup: $(STAMP)
	@if [ -d .venv ] && [ ! -L .venv ]; then \
	  if [ -f .venv/.installed ]; then rm -rf .venv; \
	  else echo "make: .venv is a directory this Makefile did not make; move it away" >&2; exit 2; fi; \
	fi
	@ln -sfn $(VENV) .venv

toy: setup
	.venv/bin/python toy/mdn.py $(ARGS)

benchmark: setup
	.venv/bin/python -m experiments.benchmark $(ARGS)

# Every combination found (tools/test_matrix.sh), or PYTHON's alone where it is given here.
test:
	@PYTHON_VERSIONS='$(PYTHON_VERSIONS)' NUMPY1_VERSIONS='$(NUMPY1_VERSIONS)' \
	  ONLY_PYTHON='$(if $(PYTHON_GIVEN),$(PYTHON))' ONLY_NUMPY='$(if $(NUMPY_GIVEN),$(NUMPY))' \
	  bash tools/test_matrix.sh

# One combination, in its venv (called by tools/test_matrix.sh).
test-venv: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests $(ARGS)

# The GPU verification in one command, on the lent GPU machine (README, "GPU"): its python3
# installs the wheels it lacks (.gpu-wheels/, a copy of ../shared/gpu-wheels) and writes
# results/gpu/. ARGS=--dry-run runs the same steps here, on the CPU with tiny sizes, in .venv
# (the project's environment: the system python3 has no chainer).
GPU_DRY_RUN := $(findstring --dry-run,$(ARGS))
gpu-check: $(if $(GPU_DRY_RUN),setup)
	$(if $(GPU_DRY_RUN),.venv/bin/python,$(PYTHON)) tools/gpu_check.py $(if $(GPU_DRY_RUN),,--wheels .gpu-wheels) $(ARGS)
