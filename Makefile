# Two entry points (see README): `make demo` and `make test`. Both create the virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned so that CPU machines take the local CPU wheel instead of a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_FLAGS ?= --quick
export POISONLAB_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup demo test bench bench-cli screenshots

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,flower]"
	touch $@

demo: setup
	rm -rf runs/demo runs/demo.partial
	$(BIN)/poisonlab demo $(DEMO_FLAGS) --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python scripts/bench_fed_round.py

bench-cli: setup
	$(BIN)/python scripts/bench_cli_start.py

# needs Debian's chromium (apt-get install chromium); writes runs/screenshots/*.png at 1280 px
screenshots: setup
	$(BIN)/python scripts/screenshot_reports.py runs/demo/report.html $(wildcard runs/demo/*/report.html)
