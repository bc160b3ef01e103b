#!/bin/bash
# One prepared GPU session on the project's bare, offline device machine (see ../shared/device/README.md).
#
# Here, before the call (the kit travels in the ignored .device/ folder):
#   mkdir -p .device && cp ../shared/device/wheels/*.whl ../shared/device/setup.sh .device/
#   cp ../shared/datasets/cifar10/train.tar.gz .device/     # real images for both modes (random pixels without)
# Then, as the device command (carry: [".device"], timeout_s a little above LIMIT):
#   bash benchmarks/device_session.sh bench            # the whole gpu suite -> $OUT/gpu.md, gpu.json, bench.log
#   bash benchmarks/device_session.sh simsiam 100      # paper recipe at batch 512 -> $OUT/simsiam/, simsiam.log
#   (arguments after EPOCHS go to recipes/simsiam_cifar.py: a CPU check is `simsiam 1 --subset 512 --input-size 8`)
# Choose the epochs from the bench run's epoch row (epoch_s x epochs + ~60 s of decoding and evaluation must fit
# LIMIT). Both write $OUT/hardware.txt. Copy the figures, with date and hardware, into benchmarks/RESULTS.md and
# README.md.
set -uo pipefail
mode=${1:?usage: device_session.sh bench|simsiam [EPOCHS]}
out=${OUT:?OUT must name the folder whose files come back}
limit=${LIMIT:-540}  # seconds; the device kills a command at its timeout with its whole pipeline, output included
export PYTHONUNBUFFERED=1

bash .device/setup.sh || exit 1
export PYTHONPATH=/tmp/site:$PWD
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  echo "cpus $(nproc)"; df -h /dev/shm | tail -1
} > "$out/hardware.txt" 2>&1
cat "$out/hardware.txt"

case "$mode" in
  bench)
    per_test=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout 240")  # on the device image
    timeout "$limit" python3 -m pytest benchmarks -m gpu -p no:cacheprovider -q $per_test \
      --bench-summary "$out/gpu.md" --benchmark-json "$out/gpu.json" > "$out/bench.log" 2>&1
    status=$?
    tail -60 "$out/bench.log"
    ;;
  simsiam)
    epochs=${2:-100}
    run=/tmp/simsiam  # the per-epoch checkpoint (~90 MB) stays on the machine; the figures come back
    timeout "$limit" python3 recipes/simsiam_cifar.py --data-dir /tmp/cifar10/train --cache-dir /tmp/lse_cache \
      --epochs "$epochs" --batch-size 512 --eval-every 10 --no-progress --out-dir "$run" "${@:3}" \
      > "$out/simsiam.log" 2>&1
    status=$?
    mkdir -p "$out/simsiam" && cp "$run"/metrics.csv "$run"/metrics.png "$run"/summary.json "$out/simsiam/" 2>/dev/null
    tail -40 "$out/simsiam.log"
    ;;
  *)
    echo "unknown mode $mode (bench|simsiam)" >&2
    exit 2
    ;;
esac
echo "device_session.sh $mode: exit status $status"
exit "$status"
