#!/usr/bin/env bash
# The prepared command for a lent GPU window (issue 31's GPU path, issue 28's ablation). The machine has Python 3.12
# with torch, transformers and accelerate, but neither diffusers nor the text encoder: build the device kit here
# first (`python -m bench.device_kit build`, it says whether it fits beside the tree), then
#
#   run(command="bash bench/device_window.sh check", carry=[".device"], timeout_s=480)
#       nvidia-smi, the gpu-marked tests, training images/s (plain, fast, fast + compile at batch 1,024, bf16) and
#       the MoE overhead of both dispatches; about 6 minutes
#   run(command="bash bench/device_window.sh ablation STEPS MINUTES", carry=[".device"], timeout_s=570)
#       stage 1 of the full model and of each ablation variant, all five at once on the one GPU, STEPS steps each
#       (choose them from check's images/s: 5 runs × STEPS × 64 images), each stopped after MINUTES at the latest;
#       then the ablation table on 256 held-out prompts, drawn on the GPU
#   run(command="bash bench/device_window.sh domain MINUTES BATCH LR", carry=[".device"], timeout_s=570)
#       the whole-domain stage 10 from the bundled weights for MINUTES at BATCH images a step (the CPU runs 64 at
#       2e-4), then its fp16 bundle in two parts (8 files come back, 16 MiB each): put it together here with
#       `cat unet.part-* > diffusion_pytorch_model.safetensors` in a folder holding the returned config.json
#
# What comes back is $OUT: at most 8 files, so logs and sample grids travel in one tar.gz. A committed run snapshot
# (snapshots/, ~30 MB) does not fit in the 64 MiB a call carries beside the tree and the kit: move
# it out of the working tree for the call (the domain phase then starts from the bundled weights), back after.
set -euo pipefail
phase=${1:?"name a phase: check, ablation or domain"}
out=${OUT:-/tmp/device-window}
mkdir -p "$out"
# The training phases start their runs from nothing in runs/: on a machine that has runs of its own (this project's
# CPU machine) they would resume and change them, so they refuse.
if [ "$phase" != check ] && compgen -G "runs/stage*" >/dev/null; then
    echo "runs/ already holds stage runs; the $phase phase is for a fresh GPU machine" >&2
    exit 2
fi

export PYTHONPATH="$PWD/.device/diffusers.zip:$PWD" RAPHAEL_TEXT_ENCODER=/tmp/raphael-text-encoder
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
export ACCELERATE_MIXED_PRECISION=bf16
[ -f "$RAPHAEL_TEXT_ENCODER/model.safetensors" ] || python3 -m bench.device_kit unpack --to "$RAPHAEL_TEXT_ENCODER"

case "$phase" in
check)
    nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
    # The suite's conftest loads the browser and server fixtures (Playwright, Gradio), which this machine lacks.
    timeout 120 python3 -m pytest -q -p no:cacheprovider --noconftest -m gpu tests/test_gpu.py \
        tests/test_moe_dense_dispatch.py >"$out/gpu-tests.txt" 2>&1 || true
    timeout 300 python3 -m bench.train_throughput --settings plain fast fast-compile --batch-sizes 1024 \
        --steps 40 --warmup 15 --workers 12 >"$out/train_throughput.json" 2>"$out/train_throughput.log" || true
    timeout 100 python3 -m bench.moe_overhead --device cuda >"$out/moe_overhead.json" 2>"$out/moe_overhead.log" || true
    ;;
ablation)
    steps=${2:?"ablation needs STEPS"}
    minutes=${3:-6}
    for variant in full dense no-space no-time no-edge; do
        which=()
        [ "$variant" = full ] || which=(--variant "$variant")
        python3 -m model.training.curriculum --stage 1 --steps "$steps" "${which[@]}" --workers 2 \
            --moe-dispatch dense --log-every 50 --time-limit "$minutes" >"$out/train-$variant.log" 2>&1 &
    done
    wait
    python3 -m model.evaluation.ablation --stage 1 --n "${ABLATION_N:-256}" --batch 64 --out "$out/ablation" \
        >"$out/ablation.log" 2>&1 || true
    cp "$out/ablation/results.md" "$out/ablation/results.json" "$out/" 2>/dev/null || true
    tar -czf "$out/ablation-extras.tar.gz" -C "$out" ablation $(cd "$out" && ls train-*.log ablation.log)
    rm -rf "$out/ablation" "$out"/train-*.log
    for run in runs/stage1 runs/stage1-*; do tail -n 1 "$run/log.jsonl" | sed "s|^|$run |"; done >"$out/last-steps.txt"
    ;;
domain)
    minutes=${2:?"domain needs MINUTES"}
    python3 -m model.training.curriculum --stage 10 --init model/checkpoints/raphael-tiny/unet --workers 12 \
        --moe-dispatch dense --log-every 50 --time-limit "$minutes" --batch-size "${3:-256}" --lr "${4:-4e-4}" \
        >"$out/train-domain.log" 2>&1 || true
    python3 -m model.training.bundle --run runs/stage10 --out /tmp/stage10-bundle >>"$out/train-domain.log" 2>&1
    split -b 15M /tmp/stage10-bundle/unet/diffusion_pytorch_model.safetensors "$out/unet.part-"
    cp /tmp/stage10-bundle/unet/config.json "$out/config.json"
    cp /tmp/stage10-bundle/training.json "$out/training.json"
    gzip -c runs/stage10/log.jsonl >"$out/log.jsonl.gz"
    ;;
*)
    echo "unknown phase $phase: check, ablation or domain" >&2
    exit 2
    ;;
esac
ls -la "$out"
