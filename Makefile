# Two commands do all the set-up on a fresh machine:
#   make run    -- the explorer on the bundled models at http://127.0.0.1:7860
#                  (installs requirements.txt only: what the app needs, no test tools)
#   make test   -- the test suite (CPU, offline); adds the test tools and the llama.cpp runtime
# Both install the project itself into the venv (pip install -e .): `import hsd` from any folder
# and the `hsd` command (.venv/bin/hsd, the same as python -m hsd).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
# llama-cpp-python builds from source: the library only, on every core
export CMAKE_ARGS ?= -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test venv venv-run
venv: $(VENV)/.installed
venv-run: $(VENV)/.run-installed

# what running the app needs
$(VENV)/.run-installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# ... and what the tests need on top (pytest, hypothesis, playwright, llama-cpp-python)
$(VENV)/.installed: $(VENV)/.run-installed requirements-dev.txt requirements-llamacpp.txt
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt
	touch $@

run: venv-run
	$(PY) app.py

test: venv
	$(PY) -m pytest
