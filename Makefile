# Set-up on a fresh machine is two commands: `make demo` and `make test`.
# Both create .venv, install emkit into it (a CPU build of torch by default) and then run.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; a machine with a GPU can pass e.g. TORCH_SPEC='torch>=2.2'.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= emkit-demo
BIN = $(VENV)/bin

.PHONY: install demo test lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/emkit demo --output $(DEMO_DIR)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/emkit/errors.py src/emkit/io src/emkit/geometry src/emkit/ops

# Headless Chromium for the real-browser tests (tests/_browser.py): Debian's chromium and
# chromium-driver, installed when missing and running as root (CI is). Otherwise nothing
# happens here and the browser tests skip, except under CI=true where they fail.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver (Debian) for the browser tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; } || \
	  { if [ -n "$$CI" ] && [ "$$CI" != false ] && [ "$$CI" != 0 ]; then exit 1; fi; \
	    echo "could not install chromium (no network?): the browser tests will skip" >&2; }; \
	elif [ -n "$$CI" ] && [ "$$CI" != false ] && [ "$$CI" != 0 ]; then \
	  echo "chromium/chromium-driver are missing and this is not root: the browser tests" \
	    "will fail (apt-get install chromium chromium-driver)" >&2; \
	fi

test: lint browser
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install -q "astra-toolbox>=2.1"
	$(BIN)/python benchmarks/projector.py
	$(BIN)/python benchmarks/tomo.py
	$(BIN)/python benchmarks/register.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
