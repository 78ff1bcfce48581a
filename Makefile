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
.PHONY: help venv sysdeps run test test-fast lint train train-dense snapshot ablation ablation-eval eval bench export backup restore agreement leaderboard finetune distill next-version loop

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP) ## create or refresh .venv (torch CPU first, then requirements.txt)

sysdeps: ## install Chromium, PostgreSQL, the emoji font and a Chinese font with apt-get where missing
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	test -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf || missing="$$missing fonts-noto-color-emoji"; \
	test -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc || missing="$$missing fonts-noto-cjk"; \
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

lint: venv ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The curriculum is model/training/curriculum.toml; STAGE defaults to the stage of the shipped weights.
# VARIANT names one ablation of VARIANTS in model/training/curriculum.py (make train VARIANT=no-space).
STAGE ?=
INIT ?=
VARIANT ?=
run_flags = $(if $(TRAIN_STEPS),--steps $(TRAIN_STEPS)) $(if $(INIT),--init $(INIT))
stage_flags = $(if $(STAGE),--stage $(STAGE)) $(run_flags)
ablation_stage = $(or $(STAGE),$(error make $@ needs STAGE=n, e.g. make $@ STAGE=1))

train: venv ## reproduce the shipped RAPHAEL-tiny: each curriculum stage up to STAGE, resuming runs/stageN; VARIANT=no-space an ablation; ARGS adds flags
	$(PY) -m model.training.curriculum $(stage_flags) $(if $(VARIANT),--variant $(VARIANT)) $(ARGS)

train-dense: venv ## the dense baseline on the same data stream, stages and steps (runs/stageN-dense)
	$(PY) -m model.training.curriculum --variant dense $(stage_flags) $(ARGS)

snapshot: venv ## keep runs/stageN (STAGE=n, VARIANT=…) in snapshots/ to commit: make train on a fresh machine resumes it
	$(PY) -m model.training.snapshot save --run runs/stage$(ablation_stage)$(if $(VARIANT),-$(VARIANT))

ablation: venv ## the full model, then every ablation variant up to STAGE=n in turn, each resumed (runs/stageN-VARIANT)
	$(PY) -m model.training.curriculum --ablation --stage $(ablation_stage) $(run_flags) $(ARGS)

ablation-eval: venv ## the full model against each ablation variant of STAGE=n on the same held-out prompts (eval/ablation-stageN)
	$(PY) -m model.evaluation.ablation --stage $(ablation_stage) --n 256 --out eval/ablation-stage$(ablation_stage) $(ARGS)

eval: venv ## score the bundled checkpoint on held-out prompts of the STAGE; ARGS="--baseline DIR" adds the dense one
	$(PY) -m model.evaluation.evaluate --n 256 --steps 25 $$($(PY) -m model.training.curriculum $(stage_flags) --eval-flags) $(ARGS)

bench: venv ## benchmarks that print JSON
	$(PY) -m bench.moe_overhead
	$(PY) -m bench.data_throughput
	$(PY) -m bench.admission_load --torch-threads 1
	$(PY) -m bench.vote_throughput
	$(PY) -m bench.export_throughput
	$(PY) -m bench.shared_runs
	$(PY) -m bench.first_image

export: venv ## export preference data, e.g. ARGS="--format pickapic --as parquet --out exports/pairs"
	$(PY) -m feedback.export $(ARGS)

backup: venv ## back up the feedback database and images (keys only with --with-keys), e.g. ARGS="--out backups/feedback.tar"
	$(PY) -m feedback.backup backup $(ARGS)

restore: venv ## restore a backup into an empty database (stop the app first), e.g. ARGS="--from backups/feedback.tar"
	$(PY) -m feedback.backup restore $(ARGS)

agreement: venv ## rater agreement of the collected feedback as JSON, e.g. ARGS="--model raphael-tiny"
	$(PY) -m feedback.agreement $(ARGS)

leaderboard: venv ## the arena's ratings with 95% intervals and win rates, e.g. ARGS="--json"
	$(PY) -m feedback.leaderboard $(ARGS)

finetune: venv ## DPO/KTO fine-tuning on an export, e.g. ARGS="--data exports/pairs --out runs/dpo"
	$(PY) -m model.training.preference $(ARGS)

distill: venv ## guidance distillation: one U-Net pass per step instead of CFG's two, e.g. ARGS="--out runs/distill"
	$(PY) -m model.training.distill_guidance $(ARGS)

ROUND ?= $(shell date -u +%Y%m%d-%H%M)
next-version: venv ## feedback → export (flagged raters out) → tuning → comparison → data/versions if not worse
	$(PY) -m app.next_version --out runs/next-version/$(ROUND) $(ARGS)

loop: venv ## simulated raters through the real app: rounds of feedback → next-version, then an arena; ARGS="--taste size"
	$(PY) -m app.loop --out runs/loop/$(ROUND) $(ARGS)
