# nskit: `make step-04` to see a step beside the article, `make test` for every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

STEPS := 00 01 02 03 04 05 06 07

.PHONY: setup test $(STEPS:%=step-%) $(STEPS:%=diff-%)
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

test: setup
	$(PY) -m pytest tests conformance

# What grading inside a throwaway VM needs from PyPI (virtme-ng, pinned), where
# the machine refuses namespaces; QEMU, a kernel and busybox come from apt-get
# (README.md: Where nskit runs).
.PHONY: vm-setup
vm-setup: $(VENV)/.vm-installed
$(VENV)/.vm-installed: requirements-vm.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-vm.txt
	touch $@

# The article's commands for step NN, on the host and through the step.
$(STEPS:%=step-%): step-%: setup
	@$(PY) -m demo $*

# What step NN changes in the skeleton; diff's exit 1 only means "they differ".
$(STEPS:%=diff-%): diff-%: setup
	@set -- steps/$*_*.py; [ -f "$$1" ] || { echo "There is no steps/$*_*.py yet." >&2; exit 1; }; \
	diff -u steps/00_skeleton.py "$$1" || [ $$? -eq 1 ]

step-% diff-%:
	@echo "There is no step $*: the steps are $(STEPS)." >&2; exit 1

include docker.mk

# -- exercises and grading (issue 5) --
# make exercise: the tasks in work/ (files already there are kept).
# make grade [TARGET=DIR] [STEP=NN...]: grade work/, or any folder of step programs.
# make gradescope-bundle: build/nskit-gradescope.zip, the Gradescope autograder.
WORK ?= work
TARGET ?= $(WORK)
STEP ?=
.PHONY: exercise grade gradescope-bundle
exercise: setup
	@$(PY) -m exercises.make_work $(WORK)

grade: setup
	@if [ "$(TARGET)" = "$(WORK)" ] && [ ! -e "$(WORK)" ]; then \
	echo "There is no $(WORK)/ yet: make exercise writes it." >&2; exit 2; fi
	@$(PY) -m conformance --target $(TARGET) $(foreach s,$(STEP),--step $(s))

gradescope-bundle: setup
	@$(PY) -m gradescope.bundle build/nskit-gradescope.zip

# -- benchmarks (issue 6) --
# make bench: the steps beside python -c pass, the article's C and unshare, the
# kernel's price per namespace, and grading (root, nobody, 1/10/100 learners);
# in a throwaway frame, about 2 minutes; writes bench/results.json.
.PHONY: bench
bench: setup
	$(PY) bench/bench.py
