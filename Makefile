# nskit: `make step-04` to see a step beside the article, `make test` for every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

STEPS := 00 01 02 03 04 05 06 07 08 09 10 11
# Beyond Part 1, each step is a copy of an earlier one: NN:BASE.
BASES := 08:03 09:06 10:09 11:10
CORES := $(shell nproc)
# make test's workers: two per core, as much of it waits on its programs (a
# parent held before each write, a child given time to die), not on a core.
# The slow tests (VMs, whole classes) keep a core each. JOBS=1 runs in one process.
JOBS ?= $(shell echo $$((2 * $(CORES))))
SLOW_JOBS ?= $(CORES)
# loadgroup: the VM tests share one worker, as two emulated VMs at once on
# two cores starve each other. The 10 slowest tests are listed, so drift shows.
PYTEST := $(PY) -m pytest --dist loadgroup --durations=10
# What the kit's commands run under make: their messages name make's targets
# (conformance/commands.py).
KIT := NSKIT_COMMAND=make $(PY)

.PHONY: setup test ns-tables $(STEPS:%=step-%) $(STEPS:%=diff-%)
.PHONY: help test-all test-slow test-as-user

## help: this list of targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## setup: make .venv with the pinned packages of requirements.txt (the other targets do it first)
setup: $(VENV)/.installed $(VENV)/.compiled
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@
# The kit's own modules compiled once, as pip compiles what it installs:
# where PYTHONDONTWRITEBYTECODE is set, or the checkout is read-only (a VM's
# root, another user's copy), every grader would compile them again at start.
# Quietly, before a demo's first line; and a copy this user may not write
# stays as it is: slower to start, never stopped.
KIT_MODULES := $(wildcard conformance/*.py demo/*.py nskit/*.py tools/*.py gradescope/*.py)
$(VENV)/.compiled: $(VENV)/.installed $(KIT_MODULES)
	@$(PY) -m compileall -q conformance demo nskit tools gradescope >/dev/null 2>&1 || true
	@touch $@ 2>/dev/null || true

## test: the kit's tests and the conformance suite on steps/, leaving out the slow, network and docker ones
test: setup
	$(PYTEST) -n $(JOBS) -m "not slow and not network and not docker"

## test-all: every test, the slow, network and docker ones too
test-all: setup
	$(PYTEST) -n $(SLOW_JOBS) -m ""

## test-slow: only the tests make test leaves out (slow, network, docker)
test-slow: setup
	$(PYTEST) -n $(SLOW_JOBS) -m "slow or network or docker"

## test-as-user: `make test` as uid 65534 on a world-readable copy of the kit, in a frame (root only)
test-as-user: setup
	@bash tools/as-user $(USER_TEST)
USER_TEST ?= make test

## step-NN: the article's commands for step NN, on the host and through the step

## vm-setup: what grading inside a throwaway VM needs from PyPI (virtme-ng, pinned); QEMU, a kernel and busybox come from apt-get (README: Where nskit runs)
.PHONY: vm-setup
vm-setup: $(VENV)/.vm-installed
$(VENV)/.vm-installed: requirements-vm.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-vm.txt
	touch $@

## step-NN: the article's commands for step NN, on the host and through the step
$(STEPS:%=step-%): step-%: setup
	@$(KIT) -m demo $*

## diff-NN: what step NN changes in its base (the skeleton; beyond Part 1 the BASES above)
# diff's exit 1 only means "they differ".
diff-00: setup
	@echo "00 is the skeleton itself, the article's skeleton.c: every later step is a copy of it. Next: make diff-01."

$(filter-out diff-00,$(STEPS:%=diff-%)): diff-%: setup
	@base=$(or $(patsubst $*:%,%,$(filter $*:%,$(BASES))),00); \
	set -- steps/$*_*.py; [ -f "$$1" ] || { echo "There is no steps/$*_*.py yet." >&2; exit 1; }; \
	set -- steps/$${base}_*.py "$$1"; diff -u "$$@" || [ $$? -eq 1 ]

## rootfs [ROOTFS=DIR]: the small root filesystem of steps 10 and 11 (busybox-static), in rootfs/
ROOTFS ?= rootfs
.PHONY: rootfs
rootfs:
	@$(PYTHON) -m demo.rootfs $(ROOTFS)

## ns-tables: steps/README.md's namespace tables, from conformance/catalog.py
ns-tables: setup
	@$(PY) tools/ns_tables.py

step-% diff-%:
	@echo "There is no step $*: the steps are $(STEPS)." >&2; exit 1

include docker.mk

# -- exercises and grading --
WORK ?= work
TARGET ?= $(WORK)
STEP ?=
COURSE ?=
.PHONY: exercise exercise-beyond grade gradescope-bundle
## exercise: write the tasks into work/ (WORK=DIR elsewhere); files already there are kept
exercise: setup
	@$(KIT) -m exercises.make_work $(WORK)

## exercise-beyond: 08 to 11, each from your own copy of its base step in work/
exercise-beyond: setup
	@$(KIT) -m exercises.make_work --beyond $(WORK)

## grade [TARGET=DIR] [STEP=NN...]: grade work/, or any folder of step programs
grade: setup
	@if [ "$(TARGET)" = "$(WORK)" ] && [ ! -e "$(WORK)" ]; then \
	echo "There is no $(WORK)/ yet: make exercise writes it." >&2; exit 2; fi
	@$(KIT) -m conformance --target "$(TARGET)" $(foreach s,$(STEP),--step $(s))

## gradescope-bundle [COURSE=FILE] [BUNDLE=ZIP]: build/nskit-gradescope.zip, the
##   Gradescope autograder, with the course file's points and visibility baked in
BUNDLE ?= build/nskit-gradescope.zip
gradescope-bundle: setup
	@$(PY) -m gradescope.bundle $(BUNDLE) $(if $(COURSE),--course $(COURSE))

## classroom-template TEMPLATE=DIR [COURSE=FILE]: a GitHub Classroom template repository:
##   the exercises in work/, the grader in .nskit/, the workflow that grades every push
.PHONY: classroom-template
classroom-template: setup
	@[ -n "$(TEMPLATE)" ] || { echo "Say where: make classroom-template TEMPLATE=DIR." >&2; exit 2; }
	@NSKIT_COMMAND=classroom $(PY) -m exercises.make_work $(TEMPLATE)/work
	@mkdir -p $(TEMPLATE)/.nskit/conformance $(TEMPLATE)/.github/workflows
	@cp conformance/*.py $(TEMPLATE)/.nskit/conformance/
	@cp requirements.txt $(TEMPLATE)/.nskit/
	@$(if $(COURSE),cp $(COURSE) $(TEMPLATE)/.nskit/course.toml)
	@cp docs/classroom/classroom.yml $(TEMPLATE)/.github/workflows/
	@echo "$(TEMPLATE)/: .nskit/ (the grader$(if $(COURSE), and the course file)), .github/workflows/classroom.yml; commit them with work/."

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
