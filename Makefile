# Set-up is part of every target: a fresh machine needs only python3 (3.10+) and make.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test lint bench-quick clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel of torch first, so that no CUDA build is ever downloaded.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench,tables,bo,app]'
	touch $@

demo: $(VENV)/.installed  ## condition the shipped GP PFN on the bundled data; plot in results/
	$(VENV)/bin/priorfit demo --out results

test: $(VENV)/.installed  ## lint, then every test (slow learning tests and bench smoke tests too)
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest -q -rs  # -rs: say what was skipped and why

bench-quick: $(VENV)/.installed
	for b in gp train-speed; do $(VENV)/bin/priorfit bench $$b --quick --out results/quick || exit 1; done

clean:
	rm -rf $(VENV) results build *.egg-info
