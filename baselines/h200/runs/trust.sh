#!/usr/bin/env bash
# Issue #12 on the H200 (device tool; image torch 2.11, transformers 5.17; mamba-ssm + causal-conv1d from
# ../shared/wheels, carried as .kernels/mamba-kernels-h200.tar.xz).
#   check:  the fixes on a GPU -- NVML's energy counter period, the isolation benchmark (same point before and
#           after another backend) and calibrated decode points of every backend at 2048 (default model set),
#           the issue's phi-2 prefill repro at 32768/131072 with --calibrate, and the
#           same points plainly in a fresh process (scripts/plain_point.py).
#   start:  the full sweep (both models, 512 ... 131072, eager/compiled/graphed, --calibrate) detached with
#           setsid into /tmp/sweep (one call cannot hold it: 10 minutes a command); waits up to WAIT seconds.
#   finish: waits for the sweep to end (same warm machine), then packs /tmp/sweep into $OUT/sweep.tar.gz.
# Every phase copies what exists so far to $OUT, so a call that times out loses nothing measured.
set -u
phase=$1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
if [ ! -d /tmp/kernels/mamba_ssm ]; then
  mkdir -p /tmp/kernels && tar -xJf .kernels/mamba-kernels-h200.tar.xz -C /tmp/kernels
fi
export PYTHONPATH=/tmp/kernels
PYT="python3 -m pytest -p no:cacheprovider -rs"
CONTEXTS=${CONTEXTS:-512,2048,8192,32768,65536,131072}
pack() { tar -czf "$OUT/sweep.tar.gz" -C /tmp sweep 2>/dev/null; }
if [ "$phase" = check ]; then
  R=$OUT
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.csv"
  python3 - > "$R/energy-counter.txt" 2>&1 <<'PY'
import time, pynvml
pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
last, changes, t0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), [], time.perf_counter()
while time.perf_counter() - t0 < 3:
    e = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    if e != last:
        changes.append(time.perf_counter()); last = e
gaps = [b - a for a, b in zip(changes, changes[1:])]
print(f"counter changed {len(changes)} times in 3 s; gaps ms: min {min(gaps)*1e3:.1f} median {sorted(gaps)[len(gaps)//2]*1e3:.1f} max {max(gaps)*1e3:.1f}")
PY
  timeout 280 $PYT -m benchmark -k "isolation or test_latency_decode" --backends eager,compiled,graphed \
    --contexts 2048 --calibrate --results-file "$R/mini-points.json" > "$R/mini.log" 2>&1
  timeout 140 $PYT -m benchmark --models synthetic --backends eager -k "prefill and synthetic-phi" \
    --contexts 32768,131072 --calibrate --results-file "$R/repro-points.json" > "$R/repro.log" 2>&1
  timeout 110 python3 scripts/plain_point.py phi --context 32768 131072 > "$R/plain-phi.jsonl" 2>"$R/plain-phi.err"
elif [ "$phase" = start ]; then
  rm -rf /tmp/sweep && mkdir -p /tmp/sweep
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > /tmp/sweep/gpu.csv
  git rev-parse HEAD > /tmp/sweep/commit 2>/dev/null || true
  setsid nohup bash -c "cd $PWD && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1 && start=\$(date +%s) && \
    $PYT -m benchmark -k \"not isolation\" --models synthetic --backends eager,compiled,graphed --contexts $CONTEXTS \
    --calibrate --calibrate-contexts 512,131072 \
    --benchmark-storage=file:///tmp/sweep/baselines --benchmark-save=synthetic-bf16 \
    --benchmark-columns=min,median,max,rounds --scaling-report /tmp/sweep/report \
    --results-file /tmp/sweep/points.json > /tmp/sweep/bench.log 2>&1; echo \$? > /tmp/sweep/exit; \
    echo \$(( \$(date +%s) - start )) > /tmp/sweep/wall_s" > /dev/null 2>&1 < /dev/null &
  for _ in $(seq "${WAIT:-540}"); do [ -f /tmp/sweep/exit ] && break; sleep 1; done
  pack; tail -5 /tmp/sweep/bench.log
elif [ "$phase" = finish ]; then
  for _ in $(seq "${WAIT:-560}"); do [ -f /tmp/sweep/exit ] && break; sleep 1; done
  pack; tail -5 /tmp/sweep/bench.log; cat /tmp/sweep/exit /tmp/sweep/wall_s 2>/dev/null
fi
