# Two entry points for a fresh clone:
#   make demo   install everything and run discovery on a bundled dataset
#   make test   install everything and run the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test bench clean browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/discovery demo

test: install browser
	$(BIN)/python -m pytest -q -rs -n 2

# The report's browser test needs headless Chromium: installed with apt-get when we are root and it
# is missing; otherwise that test is skipped and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| echo "could not install chromium: the report's browser test will be skipped"; \
	else echo "chromium not found and not installable here (needs root and apt-get): the report's browser test will be skipped"; fi

bench: install
	$(BIN)/python experiments/engine_speed.py

clean:
	rm -rf $(VENV) results experiments/out
