# RAPHAEL-tiny demo. `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.DEFAULT_GOAL := help
.PHONY: help venv sysdeps run test test-fast lint train eval bench export finetune

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP) ## create or refresh .venv (torch CPU first, then requirements.txt)

sysdeps: ## install Chromium, PostgreSQL and the emoji font with apt-get where missing
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	test -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf || missing="$$missing fonts-noto-color-emoji"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

run: venv ## start the demo on the bundled RAPHAEL-tiny at http://127.0.0.1:7860
	$(PY) app.py

test: venv sysdeps ## run the whole test suite (browser and Postgres tests included)
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-fast: venv ## unit tests only (no browser, no Postgres, no slow)
	$(PY) -m pytest -m "not browser and not postgres and not slow"

lint: venv ## ruff
	$(PY) -m ruff check .

train: venv ## train RAPHAEL-tiny (resumes from runs/raphael-tiny/state.pt); ARGS="..." to pass flags
	$(PY) -m model.train --out runs/raphael-tiny $(ARGS)

eval: venv ## evaluate the bundled checkpoint against the dense baseline
	$(PY) -m model.evaluate $(ARGS)

bench: venv ## benchmarks that print JSON
	$(PY) -m bench.moe_overhead

export: venv ## export preference data, e.g. ARGS="--format pickapic --as parquet --out exports/pairs"
	$(PY) -m feedback.export $(ARGS)

finetune: venv ## DPO/KTO fine-tuning on an export, e.g. ARGS="--data exports/pairs --out runs/dpo"
	$(PY) -m model.preference $(ARGS)
