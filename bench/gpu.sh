#!/usr/bin/env bash
# bench/gpu.sh: the Vulkan GPU benchmarks in one go (under 5 minutes on a GPU).
#   1. builds bin/darwinlm-vulkan (cgo, -tags vulkan) and the benchmark binary;
#   2. checks for an NVIDIA or AMD Vulkan driver and lists the devices;
#   3. runs the GEMM (GFLOP/s, device-resident and through host slices, CPU
#      backend alongside), device attention forward/backward, forward and
#      fine-tuning with resident weights, and Trainer (tokens/s) benchmarks.
# Usage: bench/gpu.sh [--allow-cpu]   (--allow-cpu runs on lavapipe too: slow,
# correctness only; sizes are then cut to 256,512)
# Env: DARWINLM_VULKAN_DEVICE (device index, default: the first GPU found),
#      DARWINLM_VK_BENCH_SIZES (default 1024,2048,4096), DARWINLM_HUB_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export DARWINLM_HUB_MIRROR="${DARWINLM_HUB_MIRROR:-$(cd .. && pwd)/shared/hf}"
allow_cpu=0
[ "${1:-}" = "--allow-cpu" ] && allow_cpu=1

die() { echo "gpu.sh: $*" >&2; exit 1; }

command -v gcc >/dev/null || die "gcc not found (cgo is needed for the Vulkan build)"
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 ' || [ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ] ||
  die "libvulkan.so.1 not found: apt-get install libvulkan1 libvulkan-dev (or ship libvulkan.so.1 and set LD_LIBRARY_PATH)"

icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
gpu_icd=$(echo "$icds" | grep -Ei 'nvidia|radeon|amd' || true)
echo "== Vulkan driver manifests:"; echo "${icds:-  (none)}" | sed 's/^/  /'
if [ -z "$gpu_icd" ] && [ $allow_cpu = 0 ]; then
  die "no NVIDIA or AMD Vulkan driver manifest (nvidia_icd.json / radeon_icd / amd_icd); rerun with --allow-cpu to use lavapipe"
fi
if [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ $allow_cpu = 0 ]; then
  echo "note: VK_DRIVER_FILES/VK_ICD_FILENAMES is set (${VK_DRIVER_FILES:-$VK_ICD_FILENAMES}); unset it to see the GPU driver" >&2
fi

echo "== build"
t0=$(date +%s)
CGO_ENABLED=1 go build -tags vulkan -o bin/darwinlm-vulkan ./cmd/darwinlm
CGO_ENABLED=1 go test -tags vulkan -c -o bin/vulkan-bench.test ./backend/vulkan/
echo "built in $(( $(date +%s) - t0 )) s"

echo "== devices"
info=$(bin/darwinlm-vulkan info 2>/dev/null)
echo "$info" | grep -E '^(vulkan|  )' || true
if [ -z "${DARWINLM_VULKAN_DEVICE:-}" ]; then
  DARWINLM_VULKAN_DEVICE=$(echo "$info" | sed -n 's/^vulkan:    auto uses device \([0-9]*\).*/\1/p')
  if [ -z "$DARWINLM_VULKAN_DEVICE" ]; then
    [ $allow_cpu = 1 ] || die "the loader offers no GPU device (see the list above)"
    DARWINLM_VULKAN_DEVICE=0
  fi
fi
export DARWINLM_VULKAN_DEVICE
benchtime=3x
if echo "$info" | grep -q "^vulkan $DARWINLM_VULKAN_DEVICE: .*(CPU)"; then
  echo "note: device $DARWINLM_VULKAN_DEVICE is a CPU implementation: small sizes, one iteration, correctness only" >&2
  export DARWINLM_VK_BENCH_SIZES="${DARWINLM_VK_BENCH_SIZES:-256}"
  benchtime=1x
else
  export DARWINLM_VK_BENCH_SIZES="${DARWINLM_VK_BENCH_SIZES:-1024,2048,4096}"
fi
echo "device $DARWINLM_VULKAN_DEVICE; GEMM sizes $DARWINLM_VK_BENCH_SIZES; $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

echo "== benchmarks (GEMM: GFLOP/s; forward and training: tokens/s)"
# Each benchmark runs a fixed count; the whole run stays under 5 minutes on
# a GPU. Forward and FineTune keep the weights and activations on the
# device (backend.Device); Train is train.Trainer (graph on the device, the
# optimizer on the host around a gradient download and weight upload).
timeout 270 bin/vulkan-bench.test -test.run '^$' -test.bench 'VulkanGemm|VulkanAttention|VulkanForward|VulkanFineTune|VulkanTrain' \
  -test.benchtime $benchtime 2>&1 | grep -E 'Benchmark|FAIL|skip|ok' |
  awk '{ name=$1; metric=""; for (i=2;i<=NF;i++) if ($i=="GFLOP/s"||$i=="tokens/s") metric=$(i-1)" "$i; printf "%-80s %s\n", name, metric }'
echo "== done in $(( $(date +%s) - t0 )) s"
