# nskit: `make step-04` to see a step beside the article, `make test` for every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

STEPS := 00 01 02 03 04 05 06 07
# pytest's workers: one per core (`make test JOBS=1` runs in one process).
JOBS ?= auto
PYTEST := $(PY) -m pytest -n $(JOBS)

.PHONY: setup test $(STEPS:%=step-%) $(STEPS:%=diff-%)
.PHONY: help test-all test-as-user

## help: this list of targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## setup: make .venv with the pinned packages of requirements.txt (the other targets do it first)
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

## test: the kit's tests and the conformance suite on steps/, leaving out the slow and network ones
test: setup
	$(PYTEST) -m "not slow and not network"

## test-all: every test, the slow and network ones too (what CI runs)
test-all: setup
	$(PYTEST) -m ""

## test-as-user: `make test` as uid 65534 on a world-readable copy of the kit, in a frame (root only)
test-as-user: setup
	@bash tools/as-user $(USER_TEST)
USER_TEST ?= make test

## step-NN: the article's commands for step NN, on the host and through the step
$(STEPS:%=step-%): step-%: setup
	@$(PY) -m demo $*

## diff-NN: what step NN changes in the skeleton
# What step NN changes in the skeleton; diff's exit 1 only means "they differ".
$(STEPS:%=diff-%): diff-%: setup
	@set -- steps/$*_*.py; [ -f "$$1" ] || { echo "There is no steps/$*_*.py yet." >&2; exit 1; }; \
	diff -u steps/00_skeleton.py "$$1" || [ $$? -eq 1 ]

step-% diff-%:
	@echo "There is no step $*: the steps are $(STEPS)." >&2; exit 1

include docker.mk

# -- exercises and grading --
WORK ?= work
TARGET ?= $(WORK)
STEP ?=
.PHONY: exercise grade gradescope-bundle
## exercise: write the tasks into work/ (WORK=DIR elsewhere); files already there are kept
exercise: setup
	@$(PY) -m exercises.make_work $(WORK)

## grade [TARGET=DIR] [STEP=NN...]: grade work/, or any folder of step programs
grade: setup
	@if [ "$(TARGET)" = "$(WORK)" ] && [ ! -e "$(WORK)" ]; then \
	echo "There is no $(WORK)/ yet: make exercise writes it." >&2; exit 2; fi
	@$(PY) -m conformance --target $(TARGET) $(foreach s,$(STEP),--step $(s))

## gradescope-bundle: build/nskit-gradescope.zip, the Gradescope autograder
gradescope-bundle: setup
	@$(PY) -m gradescope.bundle build/nskit-gradescope.zip

.PHONY: package
## package: build/dist/nskit-*.whl, for `pip install` or `pipx install` elsewhere
package: setup
	$(VENV)/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir build/dist .

# -- benchmarks --
## bench: the steps beside python -c pass, the article's C and unshare, the
##   kernel's price per namespace, and grading (root, nobody, 1/10/100 learners);
##   in a throwaway frame, about 2 minutes; writes bench/results.json.
.PHONY: bench
bench: setup
	$(PY) bench/bench.py
