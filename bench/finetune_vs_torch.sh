#!/usr/bin/env bash
# Fine-tuning throughput, darwinlm vs PyTorch eager, back to back, ROUNDS
# times (the machine may be shared: compare figures of the same round, and
# tokens per CPU-second, which does not depend on the share of the cores a
# process gets). Batch 1 × 128 tokens, AdamW (the selection preset),
# TinyStories-656K.
#
#   DARWINLM_HUB_MIRROR=../shared/hf bash bench/finetune_vs_torch.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DARWINLM_HUB_MIRROR:?set DARWINLM_HUB_MIRROR}"
rounds=${1:-3}
model="$DARWINLM_HUB_MIRROR/models/raincandy-u/TinyStories-656K"
go test -c -o /tmp/darwinlm-bench.test ./bench/
grep -m1 "model name" /proc/cpuinfo
for r in $(seq "$rounds"); do
  echo "round $r $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  /tmp/darwinlm-bench.test -test.run x -test.bench 'FineTune' -test.benchtime 200x | grep '^Bench'
  /usr/bin/python3 bench/torch_finetune.py --model "$model" --steps 100 --threads 2
  /usr/bin/python3 bench/torch_finetune.py --model "$model" --steps 100 --threads 1
done
