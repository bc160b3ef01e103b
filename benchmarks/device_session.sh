#!/bin/bash
# One prepared GPU session on the project's bare, offline device machine (see ../shared/device/README.md).
#
# Here, before the call (the kit travels in the ignored .device/ folder):
#   mkdir -p .device && cp ../shared/device/wheels/*.whl ../shared/device/setup.sh .device/
#   cp ../shared/datasets/cifar10/train.tar.gz .device/     # images: simsiam needs them, bench uses random without
# Then, as the device command (carry: [".device"], timeout_s at least LIMIT + 60: setup, and the 30 s grace):
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
# SIGINT, not timeout's default SIGTERM: pytest then still writes the summary and JSON of the benchmarks that
# finished, and the recipe leaves a traceback of where it was; KILL follows if that takes over 30 s.
stop=(timeout -s INT -k 30 "$limit")
export PYTHONUNBUFFERED=1

bash .device/setup.sh || exit 1
export PYTHONPATH=/tmp/site:$PWD
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  python3 -c "import timm, torchvision; print('torchvision', torchvision.__version__, 'timm', timm.__version__)"
  echo "cpus $(nproc)"; df -h /dev/shm | tail -1
  compiler=$(command -v cc gcc clang | head -1)
  echo "C compiler (Triton builds its launcher with it for torch.compile): ${compiler:-none}"
} > "$out/hardware.txt" 2>&1
cat "$out/hardware.txt"

case "$mode" in
  bench)
    per_test=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout 240")  # on the device image
    # The issues' GPU targets first (train step, epoch, augmentation), so a suite cut at LIMIT still has them.
    files=()
    for name in train_step epoch augmentation knn losses; do
      [[ -f benchmarks/test_$name.py ]] && files+=("benchmarks/test_$name.py")
    done
    for path in benchmarks/test_*.py; do [[ " ${files[*]} " == *" $path "* ]] || files+=("$path"); done
    "${stop[@]}" python3 -m pytest "${files[@]}" -m gpu -p no:cacheprovider -q $per_test \
      --bench-summary "$out/gpu.md" --benchmark-json "$out/gpu.json" > "$out/bench.log" 2>&1
    status=$?
    tail -60 "$out/bench.log"
    ;;
  simsiam)
    epochs=${2:-100}
    run=${RUN_DIR:-/tmp/simsiam}  # the per-epoch checkpoint (~90 MB) stays on the machine; the figures come back
    # An earlier run's figures on a warm machine must not come back as this one's (last.pt stays for --resume).
    rm -f "$run"/summary.json "$run"/metrics.png
    # A fresh run replaces the earlier one's last.pt only when told to (the recipe refuses a folder holding a run).
    [[ " ${*:3} " == *" --resume "* ]] || { rm -f "$run"/metrics.csv; set -- "$@" --overwrite; }
    "${stop[@]}" python3 recipes/simsiam_cifar.py --data-dir /tmp/cifar10/train --cache-dir /tmp/lse_cache \
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
