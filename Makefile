# nskit: `make step-04` to see a step beside the article, `make test` for every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

STEPS := 00 01 02 03 04 05 06 07 08 09
# Beyond Part 1, each step is a copy of an earlier one: NN:BASE.
BASES := 08:03 09:06

.PHONY: setup test ns-tables $(STEPS:%=step-%) $(STEPS:%=diff-%)
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

test: setup
	$(PY) -m pytest tests conformance

# The article's commands for step NN, on the host and through the step.
$(STEPS:%=step-%): step-%: setup
	@$(PY) -m demo $*

# What step NN changes in its base (the skeleton, or BASES); diff's exit 1
# only means "they differ".
diff-00: setup
	@echo "00 is the skeleton itself, the article's skeleton.c: every later step is a copy of it. Next: make diff-01."

$(filter-out diff-00,$(STEPS:%=diff-%)): diff-%: setup
	@base=$(or $(patsubst $*:%,%,$(filter $*:%,$(BASES))),00); \
	set -- steps/$*_*.py; [ -f "$$1" ] || { echo "There is no steps/$*_*.py yet." >&2; exit 1; }; \
	set -- steps/$${base}_*.py "$$1"; diff -u "$$@" || [ $$? -eq 1 ]

# steps/README.md's namespace tables, from conformance/catalog.py.
ns-tables: setup
	@$(PY) tools/ns_tables.py

step-% diff-%:
	@echo "There is no step $*: the steps are $(STEPS)." >&2; exit 1

include docker.mk

# -- exercises and grading (issue 5) --
# make exercise: the tasks in work/ (files already there are kept).
# make grade [TARGET=DIR] [STEP=NN...]: grade work/, or any folder of step programs.
# make gradescope-bundle [COURSE=FILE]: build/nskit-gradescope.zip, the Gradescope
# autograder, with the course file's points and visibility baked in.
WORK ?= work
TARGET ?= $(WORK)
STEP ?=
COURSE ?=
.PHONY: exercise exercise-beyond grade gradescope-bundle
exercise: setup
	@$(PY) -m exercises.make_work $(WORK)

# make exercise-beyond: 08 and 09, each from your own 03 and 06 in work/.
exercise-beyond: setup
	@$(PY) -m exercises.make_work --beyond $(WORK)

grade: setup
	@if [ "$(TARGET)" = "$(WORK)" ] && [ ! -e "$(WORK)" ]; then \
	echo "There is no $(WORK)/ yet: make exercise writes it." >&2; exit 2; fi
	@$(PY) -m conformance --target $(TARGET) $(foreach s,$(STEP),--step $(s))

gradescope-bundle: setup
	@$(PY) -m gradescope.bundle build/nskit-gradescope.zip $(if $(COURSE),--course $(COURSE))

# -- benchmarks (issue 6) --
# make bench: the steps beside python -c pass, the article's C and unshare, the
# kernel's price per namespace, and grading (root, nobody, 1/10/100 learners);
# in a throwaway frame, about 2 minutes; writes bench/results.json.
.PHONY: bench
bench: setup
	$(PY) bench/bench.py
