# Local, private question answering over corpus/.   make run   |   make test
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-$(shell sha256sum pyproject.toml | cut -c1-16)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: run index ask bench chromium tesseract test test-stress test-fast test-slow test-browser lint format eval bench-squad model clean

# The venv is (re)built only when pyproject.toml changes: the stamp name carries its hash.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@rm -f $(VENV)/.deps-*
	# torch first and pinned: the local CPU wheel, not gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

venv: $(STAMP)

run: $(STAMP) tesseract
	$(BIN)/python -m rag index
	$(BIN)/python -m ui --host $(HOST) --port $(PORT)

index: $(STAMP)
	$(BIN)/python -m rag index

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The browser test drives Debian's chromium (never a browser downloaded by a test tool).
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# OCR of scanned pages and images: Debian's Tesseract with English data (never fetched by a test).
tesseract:
	@command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx eng || { \
		echo "installing Debian's tesseract-ocr for OCR of scanned pages"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			tesseract-ocr tesseract-ocr-eng >/dev/null; }

test: lint chromium tesseract
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Long reliability suites, then 16 concurrent clients x 25 questions over the Gradio API.
test-stress: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/test_reliability_ingest.py \
		tests/test_reliability_questions.py tests/test_reliability_faults.py
	$(BIN)/python -m tests.stress_load --clients 16 --questions 25
	$(BIN)/python -m tests.stress_load --api v1 --clients 16 --questions 25

# The seen and the unseen query sets, each with its abstention plots beside its report.
eval: $(STAMP)
	$(BIN)/python -m eval --queries eval/queries/corpus.jsonl --compare \
		--json eval/reports/corpus.json --report eval/reports/corpus.md --plots eval/reports/
	$(BIN)/python -m eval --queries eval/queries/corpus_unseen.jsonl --compare \
		--json eval/reports/corpus_unseen.json --report eval/reports/corpus_unseen.md \
		--plots eval/reports/
	$(BIN)/python -m eval.squad --abstention --json eval/reports/squad-abstention.json \
		--report eval/reports/squad-abstention.md

# Held-out articles only (eval/reader_split.json); then the reader alone on gold paragraphs.
bench-squad: $(STAMP)
	$(BIN)/python -m eval.squad --reader-only
	$(BIN)/python -m eval.squad ../shared/data/squad-dev-v1.1.json --compare \
		--index data/squad-index --json eval/reports/squad.json --report eval/reports/squad.md

bench: $(STAMP)
	$(BIN)/python -m bench.embedding
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.scale --real --sizes 100000 1000000 --stores faiss milvus
	$(BIN)/python -m bench.ingest

model: $(STAMP)
	HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0 $(BIN)/python -m rag.models download

clean:
	rm -rf data/index eval/reports .pytest_cache .ruff_cache
