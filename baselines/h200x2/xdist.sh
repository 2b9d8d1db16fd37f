#!/usr/bin/env bash
# How baselines/h200x2/XDIST.md was measured (device tool, kind nvidia-h200-x2; H200 image: torch 2.11,
# transformers 5.17; Mamba kernels from ../shared/wheels unpacked from .kernels/). The same selection runs
# with -n 2 and with -n 0, each with empty torch.compile / Triton caches so neither run reuses the other's.
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p /tmp/kernels && tar -xJf .kernels/mamba-kernels-h200.tar.xz -C /tmp/kernels
export PYTHONPATH=/tmp/kernels
if [ -n "${PYTEST_WHEEL:-}" ]; then  # another pytest than the image's (run 6: 9.2.0, which drops xdist's group tags)
  python3 -m pip install -q --no-index --no-deps --target /tmp/other-pytest "$PYTEST_WHEEL" || exit 1
  export PYTHONPATH=/tmp/other-pytest:$PYTHONPATH
fi
python3 -m pytest --version > "$OUT/pytest-version.txt" 2>&1
nvidia-smi --query-gpu=index,name,memory.total --format=csv > "$OUT/gpus.csv"
run() {  # name, timeout, pytest args...
  local name=$1 limit=$2; shift 2
  export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-$name TRITON_CACHE_DIR=/tmp/triton-$name
  local start=$(date +%s.%N)
  timeout "$limit" python3 -m pytest -p no:cacheprovider -m "quick or conformance" --durations=20 "$@" \
    > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall_s=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")" >> "$OUT/walls.txt"
}
for which in ${*:-n2 n0}; do  # both by default; "xdist.sh n2" runs one
  case $which in
    n2) run n2 270 -n 2 -v ;;  # -v: each line names the worker that ran the test
    n0) run n0 320 -n 0 ;;
  esac
done
