# Two entry points for a fresh clone:
#   make demo   install everything and run discovery on a bundled dataset
#   make test   install everything and run the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test bench clean browser compiler

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/discovery demo

test: install browser compiler
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

# The engine's fused activation kernels are compiled on first use with g++ (without one the engine
# composes in PyTorch, same results); installed with apt-get when we are root and it is missing,
# so the tests exercise both paths.
compiler:
	@if command -v $${CXX:-g++} >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing g++ for the engine's fused kernels"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null \
		|| echo "could not install g++: the engine composes in PyTorch and the fused-kernel tests are skipped"; \
	else echo "g++ not found and not installable here: the engine composes in PyTorch and the fused-kernel tests are skipped"; fi

bench: install
	$(BIN)/python experiments/engine_speed.py

clean:
	rm -rf $(VENV) results experiments/out
