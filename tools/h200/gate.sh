#!/usr/bin/env bash
# Issue #36 on one GPU through the device tool: the regression gate (pytest -m gate) recorded, rerun unchanged,
# and run with each injected regression (-p pytest_ssmbench.inject), each a cold process, into /tmp/gate.
#   parts:  copy .kernels/a (the first half of the mamba-ssm + causal-conv1d tarball; see trust.sh) to /tmp/kparts.
#   start:  join and unpack the kernels (this call carries .kernels/b), then, detached (setsid), one after the
#           other: RUNS (default "base slow-mixer prefill-memory cache same"). base records the baseline
#           (--benchmark-save=gate into /tmp/gate/store) unless BASELINE names a committed one (a folder with
#           */0001_gate.json and maybe gate-allowances.json), which is then copied in and compared against; same
#           reruns unchanged code against it and saves (its file is the second machine's or second run's figures);
#           every other name is an injection, compared, never saved; quick, quick-NAME are the quick tier (pytest -m quick,
#           QUICK_ARGS or ARGS_quick_NAME added, QUICK_LIMIT (480) s each at most, per-test times in junit.xml and
#           the log's --durations). Waits up to WAIT (540) s.
#   finish: waits up to WAIT s more. Each run's folder: log, points.json, gate.md (the gate's table), exit, wall_s.
set -u
phase=$1
export PYTHONUNBUFFERED=1
if [ "$phase" = parts ]; then
  mkdir -p /tmp/kparts && cp .kernels/a/* /tmp/kparts/ && ls -la /tmp/kparts
  nvidia-smi --query-gpu=name,memory.total,driver_version,uuid --format=csv; hostname
  exit 0
fi
if [ ! -d /tmp/kernels/mamba_ssm ]; then
  mkdir -p /tmp/kernels /tmp/kparts
  cp .kernels/*/part.* /tmp/kparts/ 2>/dev/null
  cat /tmp/kparts/part.* | tar -xJf - -C /tmp/kernels || { echo "kernels do not unpack: $(ls -la /tmp/kparts)"; exit 3; }
fi
export PYTHONPATH=/tmp/kernels
pack() { tar -czf "$OUT/gate.tar.gz.part" -C /tmp gate 2>/dev/null; mv -f "$OUT/gate.tar.gz.part" "$OUT/gate.tar.gz"; }
if [ "$phase" = start ]; then
  mkdir -p /tmp/gate/store
  [ -n "${BASELINE:-}" ] && cp -r "$BASELINE"/. /tmp/gate/store/
  nvidia-smi --query-gpu=name,memory.total,driver_version,uuid,serial --format=csv > /tmp/gate/gpu.csv; hostname >> /tmp/gate/gpu.csv
  python3 -c "import torch, transformers, mamba_ssm, causal_conv1d; print(torch.__version__, transformers.__version__, \
mamba_ssm.__version__, causal_conv1d.__version__)" > /tmp/gate/versions.txt 2>&1
  for run in ${RUNS:-}; do  # a quick run's own arguments: ARGS_<run> (dashes as underscores), QUICK_ARGS for quick
    case $run in quick*) var=ARGS_${run//-/_}; [ $run = quick ] && var=QUICK_ARGS; echo "${!var:-}" > /tmp/gate/$run.args ;; esac
  done
  # the device copy's git metadata can be stale (2026-12-05: it said bcb669d for four later commits): pass the commit
  # that runs as RUN_COMMIT=$(git rev-parse HEAD) from here; the copy's own HEAD is kept only as what it said
  echo "${RUN_COMMIT:-unknown} (device copy's git HEAD: $(git rev-parse HEAD 2>/dev/null || echo none))" > /tmp/gate/commit
  cat > /tmp/gate/run.sh <<RUN
cd $PWD
export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1 QUICK_LIMIT=${QUICK_LIMIT:-480}
for run in ${RUNS:-base slow-mixer prefill-memory cache same}; do
  d=/tmp/gate/\$run; mkdir -p \$d; start=\$(date +%s.%N)
  gate="-m gate --benchmark-storage=file:///tmp/gate/store --ssm-results-file \$d/points.json --ssm-gate-report \$d/gate.md"
  case \$run in
    quick*) args="-m quick --durations=60 --junitxml=\$d/junit.xml \$(cat /tmp/gate/\$run.args)" ;;
    base) args="\$gate --benchmark-save=gate" ;;
    same) args="\$gate --benchmark-compare=*/0001_gate --benchmark-save=same" ;;
    *) args="\$gate --benchmark-compare=*/0001_gate -p pytest_ssmbench.inject --ssm-inject \$run" ;;
  esac
  limit=420; case \$run in quick*) limit=\${QUICK_LIMIT:-480} ;; esac
  eval timeout -s INT \$limit python3 -m pytest -p no:cacheprovider -rs \$args > \$d/log 2>&1
  echo \$? > \$d/exit; python3 -c "import time; print(round(time.time() - \$start, 1))" > \$d/wall_s
done
touch /tmp/gate/done
RUN
  setsid nohup bash /tmp/gate/run.sh > /tmp/gate/run.log 2>&1 < /dev/null &
fi
for i in $(seq "${WAIT:-540}"); do [ -f /tmp/gate/done ] && break; sleep 1; [ $((i % 60)) = 0 ] && pack; done
pack
for d in /tmp/gate/*/; do [ -f "$d/exit" ] && echo "$(basename $d): exit $(cat $d/exit), $(cat $d/wall_s) s; $(grep -E '^=+ .* in ' $d/log | tail -1)"; done
ls /tmp/gate
