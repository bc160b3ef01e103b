#!/bin/bash
# One prepared GPU session on the project's bare, offline device machine (see ../shared/device/README.md).
#
# Here, before the call (the kit travels in the ignored .device/ folder):
#   echo /.device/ >> .git/info/exclude
#   mkdir -p .device && cp ../shared/device/wheels/*.whl ../shared/device/setup.sh .device/
#   cp ../shared/datasets/cifar10/train.tar.gz .device/          # only for the simsiam mode
# Then, as the device command (carry: [".device"]):
#   bash benchmarks/device_session.sh bench               # GPU benchmark suite -> $OUT/gpu.md, gpu.json
#   bash benchmarks/device_session.sh simsiam 200         # paper recipe, 200 epochs, batch 512 -> $OUT/simsiam/
# Both write $OUT/hardware.txt. Copy the figures into benchmarks/RESULTS.md and README.md with date and hardware.
set -euo pipefail
mode=${1:?usage: device_session.sh bench|simsiam [EPOCHS]}
out=${OUT:?OUT must name the folder whose files come back}

bash .device/setup.sh
export PYTHONPATH=/tmp/site:$PWD
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} > "$out/hardware.txt" 2>&1
cat "$out/hardware.txt"

case "$mode" in
  bench)
    python3 -m pytest benchmarks -m gpu -p no:cacheprovider -q --bench-summary "$out/gpu.md" \
      --benchmark-json "$out/gpu.json" 2>&1 | tail -80
    ;;
  simsiam)
    epochs=${2:-200}
    python3 recipes/simsiam_cifar.py --data-dir /tmp/cifar10/train --cache-dir /tmp/lse_cache --epochs "$epochs" \
      --batch-size 512 --eval-every 10 --no-progress --out-dir "$out/simsiam" 2>&1 | tail -60
    rm -f "$out/simsiam/last.pt"  # 90 MB of weights: the figures are what comes back
    ;;
  *)
    echo "unknown mode $mode (bench|simsiam)" >&2
    exit 2
    ;;
esac
