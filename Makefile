# The two commands (README): `make demo` runs the main job end to end, `make test` the test suite.
# Both create .venv on first use and install hf_rnn into it (torch pinned to the CPU wheel).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: demo test test-slow test-gpu bench bench-gpu lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e ".[test,bench,plots]"
	touch $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(PY) examples/quickstart.py --output_dir runs/quickstart --overwrite_output_dir --use_crf --char_encoder lstm

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q

test-slow: $(STAMP)  # the tests that `make test` skips (marked slow: the README's ONNX export block)
	$(OFFLINE) $(PY) -m pytest -q -m slow

test-gpu: $(STAMP)  # the tests that need a CUDA device (marked gpu); they skip, saying so, where torch sees none
	$(OFFLINE) $(PY) -m pytest -q -m gpu

bench: $(STAMP)  # every benchmark on the CPU; the ratios beside their goals are printed last and kept in runs/bench-cpu.md
	$(OFFLINE) $(PY) bench/run_all.py --device cpu

bench-gpu: $(STAMP)  # the same on the first CUDA device, into runs/bench-cuda.md
	$(OFFLINE) $(PY) bench/run_all.py --device cuda

lint: $(STAMP)
	$(VENV)/bin/ruff check hf_rnn examples tests bench && $(VENV)/bin/ruff format --check hf_rnn examples tests bench

clean:
	rm -rf runs .pytest_cache
