# Two commands do all the set-up on a fresh machine:
#   make run    -- the explorer on the bundled models at http://127.0.0.1:7860
#   make test   -- the test suite (CPU, offline)
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

.PHONY: run test venv
venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-llamacpp.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: venv
	$(PY) app.py

test: venv
	$(PY) -m pytest
