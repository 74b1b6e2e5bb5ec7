# Two entry points for a fresh clone:
#   make demo   install everything and run discovery on a bundled dataset
#   make test   install everything and run the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/discovery demo

test: install
	$(BIN)/python -m pytest -q -n 2

bench: install
	$(BIN)/python experiments/engine_speed.py

clean:
	rm -rf $(VENV) results experiments/out
