#!/usr/bin/env bash
# Issue #12 on the H200 (device tool; image torch 2.11, transformers 5.17; mamba-ssm + causal-conv1d from
# ../shared/wheels, carried as .kernels/mamba-kernels-h200.tar.xz: both wheels unpacked into one folder, the two
# CUDA extensions' symbols stripped (strip --strip-unneeded: 90 -> 69 MB; the device tool carries 64 MiB with the
# checkout), then tar -cf - . | xz -9e).
#   check:  Mamba's prefill at 512 and 2048 by the suite's call and plainly, alternating in one process
#           (tools/h200/prefill_probe.py), then by the suite as the first point of a fresh process, calibrated;
#           the isolation benchmark (same point before and after another backend); GPU clocks sampled.
#           (The 2026-11-28 check, in runs/2026-11-28-trust/check, is this file's check at commit 5878a6c.)
#   quick:  the quick tier on the GPU with the kernels (all architectures' tiny checkpoints: kernel parity of
#           every SSM architecture with kernels), into $OUT/quick.
#   start:  detached with setsid into /tmp/sweep (one call cannot hold it: 10 minutes a command), one mode after
#           the other. trust (the default): the full sweep (the reference pair, --ssm-archs mamba,phi; 512 ... 131072,
#           eager/compiled/graphed, --calibrate; throughput as in earlier baselines: eager, prompt 512, batch
#           1/8/32, 32 new tokens, calibrated at batch 1 and 8 since 35ecaa2 -- the paper's throughput sweep is a
#           mode of its own); two points plainly in fresh
#           processes (ssmbench plain: phi-2 compiled decode at 512, Mamba's prefill at 131072).
#           Waits up to WAIT seconds.
#           SWEEP=MODE,...: what runs, in that order (default trust: the above). undecided: issue #12's two long
#           compiled decodes (131072) calibrated with UNDECIDED_S (400) seconds of pairs each; plain-decode: the
#           same decodes plainly, each in a fresh process (ssmbench plain, 33 tokens, a streamer's clock);
#           UNDECIDED_ARCHS (mamba,phi) picks the models of both; native: issue #14's
#           decode sweep (compiled, graphed, native; 512 ... 32768, calibrated at 512 and 32768) and
#           ssmbench profile-step at 2048 (PROFILE_S, 240); native-probe: issue #14's probe
#           (ssmbench native-probe) into /tmp/sweep/native; throughput: issue #13's paper-shaped run (prompt
#           2048 / 128 new tokens, batch 1 ... 256, every backend, calibrated at THROUGHPUT_CALIBRATE's batches;
#           phi-2's eager and compiled took 483 s uncalibrated on 2026-11-29, Mamba's four backends more);
#           throughput-long: prompts 8192 and 32768 (THROUGHPUT_LONG_PROMPTS) at batch 1/4/16/64, every backend;
#           throughput-check: the throughput points' energy and decode figures by the suite and by
#           ssmbench plain --energy at CHECK_BATCHES (16 128), both models.
#           THROUGHPUT_ARCHS (mamba,phi) and THROUGHPUT_BACKENDS (all four) split them further across sessions
#           (THROUGHPUT_LONG_ARCHS, default THROUGHPUT_ARCHS, for throughput-long alone: two lanes, two model sets);
#           ssmbench summarize then reads the runs' points files together; quick: the quick tier with the
#           kernels, the --archs groups of QUICK_GROUPS (space-separated; default all four; each group's default
#           model set holds its tiny models too) one after the other (QUICK_SIDE_BY_SIDE=1: side by side; on
#           2026-11-29 two groups compiling mamba-ssm's Triton kernels at once finished together, no sooner, and a
#           group after another reuses its compiled kernels), each line of their logs time-stamped,
#           faulthandler's stacks after QUICK_DUMP_S (60) s in one test, QUICK_S (480) s each, QUICK_ARGS added to
#           each group's pytest line (one test again: QUICK_ARGS="--models synthetic -k beam_search"); before them, with
#           QUICK_TINY_S=N, a tiny-only pass of every architecture capped at N seconds (default 0: none; 200
#           covered 21 % on a fresh machine); archs: the other architectures (mamba2, falcon_mamba, qwen2, llama,
#           bamba; eager, 512 ... 32768, calibrated at 512) into /tmp/sweep/archs.
#           NATIVE=1, QUICK=1, ARCHS=1 append native-probe, quick, archs to SWEEP (in that order).
#           Each mode's run goes into its own folder under /tmp/sweep (trust: /tmp/sweep itself).
#           SWEEP_GPU1=MODE,...: on a two-GPU machine (kind nvidia-h200-x2), a second lane beside the first: SWEEP's
#           modes on GPU 0, SWEEP_GPU1's on GPU 1, each lane pinned to half of the CPUs (a mode runs in one lane
#           only). Timing modes in both lanes share the host, not a GPU: the README of such a run says so.
#           RUN_COMMIT=<hash>: the commit the run's code is, written to /tmp/sweep/commit.
#   finish: waits up to WAIT seconds more for all of it (same warm machine).
# The detached run samples the GPU's clocks, power, temperature and throttle reasons once a second into
# /tmp/sweep/clocks.csv.
# Every phase packs what exists so far into $OUT/sweep.tar.gz, every minute while waiting, so a call that times
# out loses nothing measured.
set -u
phase=$1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
# The tarball (58.9 MB) and the checkout (8.2 MB of tracked files by 2026-11-29) no longer fit one call's 64 MiB:
# split -n 2 -d it into .kernels/a/part.00 and .kernels/b/part.01, and carry .kernels/a in a first call that only
# copies it to /tmp/kparts (cp .kernels/a/* /tmp/kparts/), then .kernels/b in this one: the parts are joined here.
if [ ! -d /tmp/kernels/mamba_ssm ]; then
  mkdir -p /tmp/kernels /tmp/kparts
  if [ -f .kernels/mamba-kernels-h200.tar.xz ]; then
    tar -xJf .kernels/mamba-kernels-h200.tar.xz -C /tmp/kernels
  else
    cp .kernels/*/part.* /tmp/kparts/ 2>/dev/null
    cat /tmp/kparts/part.* | tar -xJf - -C /tmp/kernels || { echo "the kernels' parts in /tmp/kparts do not unpack: $(ls -la /tmp/kparts)"; exit 3; }
  fi
fi
export PYTHONPATH=/tmp/kernels
PYT="python3 -m pytest -p no:cacheprovider -rs"
CONTEXTS=${CONTEXTS:-512,2048,8192,32768,65536,131072}
# The detached run's helper (put at the top of run.sh): one benchmark run into a folder -- its log, points,
# pytest-benchmark file, scaling report, exit status and wall seconds. Every sweep below is one call of it.
read -r -d '' SWEEP_FN <<'FN'
sweep() {  # sweep DIR NAME PYTEST-ARGS...
  local dir=$1 name=$2 start; shift 2; mkdir -p "$dir"; start=$(date +%s)
  python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic "$@" \
    --benchmark-storage="file://$dir/baselines" --benchmark-save="$name" --benchmark-columns=min,median,max,rounds \
    --scaling-report "$dir/report" --results-file "$dir/points.json" > "$dir/bench.log" 2>&1
  echo $? > "$dir/exit"; echo $(( $(date +%s) - start )) > "$dir/wall_s"
}
FN
pack() { tar -czf "$OUT/sweep.tar.gz.part" -C /tmp sweep 2>/dev/null; mv -f "$OUT/sweep.tar.gz.part" "$OUT/sweep.tar.gz"; }
wait_for() {  # wait_for FILE SECONDS: until FILE exists, packing every minute
  for i in $(seq "$2"); do [ -f "$1" ] && break; sleep 1; [ $((i % 60)) = 0 ] && pack; done
  pack
}
if [ "$phase" = check ]; then
  # 2026-11-29: the 2026-11-28 sweep's one unexplained miss (Mamba prefill at 512: 96 ms in the suite, 65 ms
  # plainly) and the isolation benchmark, which had not yet passed on a GPU. GPU clocks sampled throughout.
  R=$OUT
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.csv"
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,pstate --format=csv -lms 250 > "$R/clocks.csv" &
  sampler=$!
  timeout -s INT 150 python3 tools/h200/prefill_probe.py 512 2048 > "$R/prefill-probe.jsonl" \
    2> "$R/prefill-probe.err"
  timeout -s INT 120 $PYT -m benchmark --models synthetic --ssm-archs mamba --backends eager -k "prefill and synthetic-mamba" \
    --contexts 512,2048 --calibrate --calibrate-contexts 512,2048 --results-file "$R/prefill-points.json" \
    > "$R/prefill.log" 2>&1
  timeout -s INT 200 $PYT -m benchmark --models synthetic --ssm-archs mamba,phi -k isolation --results-file "$R/isolation-points.json" \
    > "$R/isolation.log" 2>&1
  kill $sampler
elif [ "$phase" = quick ]; then
  R=$OUT/quick; mkdir -p "$R"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.csv"
  python3 -c "import torch, transformers, mamba_ssm, causal_conv1d; print(torch.__version__, transformers.__version__, \
mamba_ssm.__version__, causal_conv1d.__version__)" > "$R/versions.txt" 2>&1
  start=$(date +%s)
  timeout -s INT ${QUICK_S:-300} $PYT -m quick > "$R/quick.log" 2>&1; echo $? > "$R/exit"
  echo $(( $(date +%s) - start )) > "$R/wall_s"
  tail -3 "$R/quick.log"
elif [ "$phase" = start ]; then
  SWEEP=${SWEEP-trust}
  MODES="trust undecided native throughput throughput-check throughput-long plain-decode native-probe quick archs"
  # The lanes: lane 0 the SWEEP modes, then the optional ones; lane 1 (SWEEP_GPU1, a two-GPU machine) its own.
  lane0=${SWEEP//,/ }
  [ "${NATIVE:-0}" = 1 ] && lane0="$lane0 native-probe"
  [ "${QUICK:-0}" = 1 ] && lane0="$lane0 quick"
  [ "${ARCHS:-0}" = 1 ] && lane0="$lane0 archs"
  lane1=${SWEEP_GPU1:-}; lane1=${lane1//,/ }
  seen=" "
  for mode in $lane0 $lane1; do
    case " $MODES " in *" $mode "*) ;;
      *) echo "SWEEP/SWEEP_GPU1: unknown mode '$mode' (valid: ${MODES// /, }; comma-separated, run in that order)"; exit 2;;
    esac
    case "$seen" in *" $mode "*) echo "mode '$mode' given twice: each mode runs once, in one lane (its folder is its own)"; exit 2;; esac
    seen="$seen$mode "
  done
  if [ -n "$lane1" ] && [ "$(nvidia-smi -L | wc -l)" -lt 2 ]; then
    echo "SWEEP_GPU1 needs a second GPU (kind nvidia-h200-x2); this machine has: $(nvidia-smi -L)"; exit 2
  fi
  if ! python3 -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d" > "$OUT/kernels-import.txt" 2>&1; then
    echo "the kernels do not import: no sweep"; cat "$OUT/kernels-import.txt"; exit 3
  fi
  rm -rf /tmp/sweep && mkdir -p /tmp/sweep/plain /tmp/sweep/archs
  # The detached run works in a copy: a later call re-sends the checkout under $PWD (on 2026-11-29 the architectures'
  # sweep, starting as the next call arrived, failed at collection).
  rm -rf /tmp/work && cp -a "$PWD" /tmp/work
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > /tmp/sweep/gpu.csv
  # The device's copy of .git can lag the working tree it was sent (2026-11-29: a6007e2 for eceec6d's files): the
  # caller names the commit, RUN_COMMIT=$(git rev-parse HEAD) written into the command, clean tree.
  if [ -n "${RUN_COMMIT:-}" ]; then echo "$RUN_COMMIT" > /tmp/sweep/commit
  else echo "$(git rev-parse HEAD 2>/dev/null) (the device's .git, which can lag: pass RUN_COMMIT)" > /tmp/sweep/commit; fi
  tcal=${THROUGHPUT_CALIBRATE-1,16}; tcal=${tcal:+--ssm-calibrate --ssm-calibrate-batches $tcal}
  block() {  # the commands of one mode
    case $1 in
    trust) cat <<EOS
sweep /tmp/sweep synthetic-bf16 --ssm-archs mamba,phi --backends eager,compiled,graphed --contexts $CONTEXTS \\
  --calibrate --calibrate-contexts 512,131072 \\
  --ssm-throughput-prompts 512 --ssm-batch-sizes 1,8,32 --ssm-throughput-new-tokens 32 \\
  -k "not (test_throughput and (compiled or graphed))"
python3 -m ssmbench plain phi --context 512 --new-tokens 33 --static-cache --calls 10 \\
  > /tmp/sweep/plain/phi-compiled-decode-512.jsonl 2> /tmp/sweep/plain/phi.err
python3 -m ssmbench plain mamba --context 131072 --calls 4 > /tmp/sweep/plain/mamba-prefill-131072.jsonl \\
  2> /tmp/sweep/plain/mamba.err
touch /tmp/sweep/plain/done
EOS
    ;;
    undecided) cat <<EOS
# Issue #12: the long compiled decodes the baseline's calibration left undecided (6 pairs in 30 s) of
# ${UNDECIDED_ARCHS:-mamba,phi}, given ${UNDECIDED_S:-400} seconds of pairs each.
sweep /tmp/sweep/undecided undecided-bf16 --ssm-archs ${UNDECIDED_ARCHS:-mamba,phi} --backends compiled -k test_latency_decode \\
  --contexts 131072 --calibrate --calibrate-contexts 131072 --ssm-calibrate-max-time ${UNDECIDED_S:-400}
EOS
    ;;
    plain-decode) cat <<EOS
# Issue #12: the compiled decodes at 131072 plainly, each in a fresh process (plain generate() with a streamer's
# clock, 33 tokens, the point's length) for ${UNDECIDED_ARCHS:-mamba,phi}.
for a in \$(echo ${UNDECIDED_ARCHS:-mamba,phi} | tr , ' '); do
  timeout -s INT 300 python3 -m ssmbench plain \$a --context 131072 --new-tokens 33 --static-cache --calls 5 \\
    > /tmp/sweep/plain/\$a-compiled-decode-131072.jsonl 2> /tmp/sweep/plain/\$a-decode.err
done
EOS
    ;;
    native) cat <<EOS
# Issue #14: Mamba's fast decodes side by side at 512 ... 32768 (transformers' compiled, the suite's graph,
# mamba-ssm's native), calibrated at 512 and 32768; then one step kernel by kernel, both sides.
sweep /tmp/sweep/native-decode native-bf16 --ssm-archs mamba --backends compiled,graphed,native -k test_latency_decode \\
  --contexts 512,2048,8192,32768 --calibrate --calibrate-contexts 512,32768
timeout -s INT ${PROFILE_S:-240} python3 -m ssmbench profile-step --context 2048 --steps 50 \\
  --out /tmp/sweep/native-decode/profile > /tmp/sweep/native-decode/profile.log 2>&1
EOS
    ;;
    throughput) cat <<EOS
# Issue #13: the Mamba paper's throughput experiment (prompt 2048, 128 new tokens, batch 1 ... 256 until out of
# memory) for every backend; the batches of THROUGHPUT_CALIBRATE (1,16; none: empty) calibrated against plain
# generate() of the same batch, alternating (2026-11-29 16:07's phi-2 run was checked only across machines).
sweep /tmp/sweep/throughput throughput-bf16 --ssm-archs ${THROUGHPUT_ARCHS:-mamba,phi} --backends ${THROUGHPUT_BACKENDS:-eager,compiled,graphed,native} \\
  -k test_throughput --ssm-throughput-prompts 2048 --ssm-batch-sizes 1,2,4,8,16,32,64,128,256 \\
  --ssm-throughput-new-tokens 128 $tcal
EOS
    ;;
    throughput-check) cat <<EOS
# Issue #13: the throughput points' energy (joules per generated token, NVML read around each whole call) and the
# decode figures, by the suite and plainly (ssmbench plain --energy, fresh processes) at batch
# ${CHECK_BATCHES:-16 128}, on a GPU of its own; eager for phi-2 and Mamba (plain_point.py runs generate()).
sweep /tmp/sweep/throughput-check throughput-check-bf16 --ssm-archs mamba,phi --backends eager,compiled,native \\
  -k test_throughput --ssm-throughput-prompts 2048 --ssm-batch-sizes $(echo ${CHECK_BATCHES:-16 128} | tr ' ' ,) \\
  --ssm-throughput-new-tokens 128
for a in mamba phi; do
  timeout -s INT 300 python3 -m ssmbench plain \$a --context 2048 --new-tokens 128 --batch ${CHECK_BATCHES:-16 128} \\
    --calls 4 --energy > /tmp/sweep/throughput-check/plain-\$a.jsonl 2> /tmp/sweep/throughput-check/plain-\$a.err
done
EOS
    ;;
    throughput-long) cat <<EOS
# Issue #13: long context at batch (prompts 8192 and 32768, batch 1/4/16/64 until out of memory), every backend.
sweep /tmp/sweep/throughput-long throughput-long-bf16 --ssm-archs ${THROUGHPUT_LONG_ARCHS:-${THROUGHPUT_ARCHS:-mamba,phi}} --backends ${THROUGHPUT_BACKENDS:-eager,compiled,graphed,native} \\
  -k test_throughput --ssm-throughput-prompts ${THROUGHPUT_LONG_PROMPTS:-8192,32768} --ssm-batch-sizes 1,4,16,64 --ssm-throughput-new-tokens 128
EOS
    ;;
    native-probe) cat <<EOS
# Issue #14's probe: mamba_ssm's MambaLMHeadModel on the weights transformers loaded, CUDA-graph decode.
mkdir -p /tmp/sweep/native
timeout -s INT 240 python3 -m ssmbench native-probe --context 11 512 2048 8192 32768 --new-tokens 33 \\
  > /tmp/sweep/native/probe.jsonl 2> /tmp/sweep/native/probe.err
echo \$? > /tmp/sweep/native/exit
EOS
    ;;
    quick) cat <<EOS
# The quick tier with the kernels: optionally the tiny models of every architecture in one process first, then
# every model set's default (auto: tiny + full-size synthetic) in --archs groups, one after the other or side by side (the
# tier asserts no timings; the groups' models fit together). Every line of a group's log (-v: one per test)
# starts with the clock time it was written, so a slow test shows as a gap.
mkdir -p /tmp/sweep/quick; start=\$(date +%s)
python3 -c "import torch, transformers, mamba_ssm, causal_conv1d as c; print(torch.__version__, transformers.__version__, mamba_ssm.__version__, c.__version__)" > /tmp/sweep/quick/versions.txt 2>&1
stamp() { while IFS= read -r l; do printf '%s %s\n' "\$(date +%T)" "\$l"; done; }
if [ ${QUICK_TINY_S:-0} -gt 0 ]; then
  timeout -s INT ${QUICK_TINY_S:-0} $PYT -m quick --models tiny -v --durations=15 -o faulthandler_timeout=${QUICK_DUMP_S:-60} 2>&1 \\
    | stamp > /tmp/sweep/quick/tiny.log
  echo \${PIPESTATUS[0]} > /tmp/sweep/quick/tiny.exit
fi
for g in ${QUICK_GROUPS:-mamba,phi mamba2,falcon_mamba qwen2,llama bamba}; do
  ( timeout -s INT ${QUICK_S:-480} $PYT -m quick --archs \$g ${QUICK_ARGS:-} -v --durations=25 -o faulthandler_timeout=${QUICK_DUMP_S:-60} 2>&1 \\
    | stamp > /tmp/sweep/quick/\${g//,/-}.log; echo \${PIPESTATUS[0]} > /tmp/sweep/quick/\${g//,/-}.exit ) $( [ "${QUICK_SIDE_BY_SIDE:-0}" = 1 ] && echo '&' )
done
wait; echo \$(( \$(date +%s) - start )) > /tmp/sweep/quick/wall_s
EOS
    ;;
    archs) cat <<EOS
sweep /tmp/sweep/archs archs-eager-bf16 --ssm-archs mamba2,falcon_mamba,qwen2,llama,bamba --backends eager \\
  --contexts 512,2048,8192,32768 -k "not isolation and not throughput" --calibrate --calibrate-contexts 512
EOS
    ;;
    esac
  }
  ncpu=$(nproc)
  lane_script() {  # lane_script N MODES...: a lane's commands, on GPU N and (two lanes) half of the CPUs
    local n=$1; shift
    echo "$SWEEP_FN"
    echo 'cd /tmp/work && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1'
    if [ -n "$lane1" ]; then
      echo "export CUDA_VISIBLE_DEVICES=$n"
      echo "taskset -pc $(( n * ncpu / 2 ))-$(( (n + 1) * ncpu / 2 - 1 )) \$\$ > /dev/null"
    fi
    for mode in "$@"; do echo "echo \"\$(date +%T) lane $n: $mode\""; block "$mode"; done
    echo "echo \"\$(date +%T) lane $n: done\""
  }
  lane_script 0 $lane0 > /tmp/sweep/lane0.sh
  [ -n "$lane1" ] && lane_script 1 $lane1 > /tmp/sweep/lane1.sh
  # run.sh: the GPUs' clocks, power and temperature once a second throughout (a figure that moves between calls --
  # phi-2's compiled decode at 131072: 15.0-17.0 ms a token -- can then be set against them; without the throttle
  # reasons where this driver does not know clocks_event_reasons), the lanes side by side, then all-done.
  {
  echo 'q=timestamp,index,clocks.sm,clocks.mem,power.draw,temperature.gpu,pstate'
  echo '(nvidia-smi --query-gpu=$q,clocks_event_reasons.active --format=csv -l 1 || nvidia-smi --query-gpu=$q --format=csv -l 1) > /tmp/sweep/clocks.csv 2>&1 &'
  echo 'bash /tmp/sweep/lane0.sh > /tmp/sweep/lane0.log 2>&1 & lanes=$!'
  [ -n "$lane1" ] && echo 'bash /tmp/sweep/lane1.sh > /tmp/sweep/lane1.log 2>&1 & lanes="$lanes $!"'
  echo 'wait $lanes'
  echo 'pkill -f "query-gpu=timestamp" 2>/dev/null'
  echo 'touch /tmp/sweep/all-done'
  } > /tmp/sweep/run.sh
  setsid nohup bash /tmp/sweep/run.sh > /tmp/sweep/run.log 2>&1 < /dev/null &
  wait_for /tmp/sweep/all-done "${WAIT:-540}"
  for f in /tmp/sweep/bench.log /tmp/sweep/*/bench.log; do [ -f "$f" ] && echo "== $f" && tail -n3 "$f"; done
  tail -n5 /tmp/sweep/lane*.log
elif [ "$phase" = finish ]; then
  wait_for /tmp/sweep/all-done "${WAIT:-560}"
  for f in /tmp/sweep/bench.log /tmp/sweep/*/bench.log /tmp/sweep/quick/*.log; do
    [ -f "$f" ] && echo "== $f" && tail -n2 "$f"
  done
  tail -n5 /tmp/sweep/lane*.log
  grep -H . /tmp/sweep/exit /tmp/sweep/wall_s /tmp/sweep/*/exit /tmp/sweep/*/wall_s 2>/dev/null
fi
