# The README's quick start: `make demo` and `make test`. Both create .venv and install qskew first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qskew-installed
# An "older board" for tests: Python 3.9 + tflite-runtime 2.14 + numpy<2 (skipped if no 3.9 is found).
BOARD_VENV   ?= .venv-board
BOARD_PYTHON ?= $(shell for p in $(HOME)/.pyenv/versions/3.9*/bin/python python3.9; do "$$p" -c "import sys; assert sys.version_info[:2] == (3, 9)" >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
BOARD_STAMP  := $(BOARD_VENV)/.qskew-board

.PHONY: demo test test-fast bench board clean

demo: $(STAMP)
	$(BIN)/qskew demo $(ARGS)

test: $(STAMP) board
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/cached_run.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

board:
	@if [ -n "$(BOARD_PYTHON)" ]; then $(MAKE) --no-print-directory $(BOARD_STAMP); \
	else echo "no Python 3.9 found: tests that play an older board will be skipped"; fi

$(BOARD_STAMP):
	$(BOARD_PYTHON) -m venv $(BOARD_VENV)
	$(BOARD_VENV)/bin/python -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2"
	touch $(BOARD_STAMP)

clean:
	rm -rf $(VENV) $(BOARD_VENV) runs .pytest_cache
