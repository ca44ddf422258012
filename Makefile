# The two commands: `make demo` and `make test`. Both create .venv and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Two stamps: the demo needs only the core (one dependency), the tests need the extras and the tools.
CORE_STAMP := $(VENV)/.core-$(HASH)
STAMP := $(VENV)/.installed-$(HASH)

# The demo's venv is made without pip and filled by the pip that came with Python (`pip --python`, pip
# >= 22.3): ensurepip alone costs several seconds of `make demo`'s 20. Without that pip, the venv gets its
# own. `make test` adds pip to the venv, so `.venv/bin/pip` works as usual after it.
$(CORE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	if $(PYTHON) -m pip --python $(BIN)/python --version >/dev/null 2>&1; then \
		$(PYTHON) -m pip --python $(BIN)/python install --quiet --disable-pip-version-check -e . ; \
	else \
		$(BIN)/python -m ensurepip && $(BIN)/python -m pip install --quiet --disable-pip-version-check -e . ; \
	fi
	rm -f $(VENV)/.core-*
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,server]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(CORE_STAMP)
	cd examples && TASKLOOM_HOME=$(CURDIR)/.taskloom-demo ../$(BIN)/python demo.py

lint: $(STAMP)
	$(BIN)/ruff check taskloom tests examples benchmarks
	$(BIN)/ruff format --check taskloom tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Mutation testing of one module (not part of `make test`; minutes, not seconds). Needs the `mutate` extra.
# Example: make mutate MODULE=taskloom/policy.py   (see docs/testing.md and tests/mutate.py)
mutate: $(STAMP)
	@test -n "$(MODULE)" || { echo "make mutate: MODULE is required, e.g. make mutate MODULE=taskloom/policy.py"; exit 2; }
	test -x $(BIN)/mutmut || $(BIN)/python -m pip install --quiet -e '.[mutate]'
	$(BIN)/python tests/mutate.py $(MODULE)

clean:
	rm -rf $(VENV) .taskloom .taskloom-demo build *.egg-info
