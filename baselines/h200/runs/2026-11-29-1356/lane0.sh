sweep() {  # sweep DIR NAME PYTEST-ARGS...
  local dir=$1 name=$2 start; shift 2; mkdir -p "$dir"; start=$(date +%s)
  python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic "$@" \
    --benchmark-storage="file://$dir/baselines" --benchmark-save="$name" --benchmark-columns=min,median,max,rounds \
    --scaling-report "$dir/report" --results-file "$dir/points.json" > "$dir/bench.log" 2>&1
  echo $? > "$dir/exit"; echo $(( $(date +%s) - start )) > "$dir/wall_s"
}
cd /tmp/work && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1
echo "$(date +%T) lane 0: undecided"
# Issue #12: the long compiled decodes the baseline's calibration left undecided (6 pairs in 30 s) of
# phi, given 300 seconds of pairs each.
sweep /tmp/sweep/undecided undecided-bf16 --ssm-archs phi --backends compiled -k test_latency_decode \
  --contexts 131072 --calibrate --calibrate-contexts 131072 --ssm-calibrate-max-time 300
echo "$(date +%T) lane 0: plain-decode"
# Issue #12: the compiled decodes at 131072 plainly, each in a fresh process (plain generate() with a streamer's
# clock, 33 tokens, the point's length) for phi.
for a in $(echo phi | tr , ' '); do
  timeout -s INT 300 python3 scripts/plain_point.py $a --context 131072 --new-tokens 33 --static-cache --calls 5 \
    > /tmp/sweep/plain/$a-compiled-decode-131072.jsonl 2> /tmp/sweep/plain/$a-decode.err
done
echo "$(date +%T) lane 0: archs"
sweep /tmp/sweep/archs archs-eager-bf16 --ssm-archs mamba2,falcon_mamba,qwen2,llama,bamba --backends eager \
  --contexts 512,2048,8192,32768 -k "not isolation and not throughput" --calibrate --calibrate-contexts 512
echo "$(date +%T) lane 0: quick"
# The quick tier with the kernels: optionally the tiny models of every architecture in one process first, then
# every model set's default (auto: tiny + full-size synthetic) in --archs groups side by side on the one GPU (the
# tier asserts no timings; the groups' models fit together). Every line of a group's log (-v: one per test)
# starts with the clock time it was written, so a slow test shows as a gap.
mkdir -p /tmp/sweep/quick; start=$(date +%s)
python3 -c "import torch, transformers, mamba_ssm, causal_conv1d as c; print(torch.__version__, transformers.__version__, mamba_ssm.__version__, c.__version__)" > /tmp/sweep/quick/versions.txt 2>&1
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%T)" "$l"; done; }
if [ 0 -gt 0 ]; then
  timeout -s INT 0 python3 -m pytest -p no:cacheprovider -rs -m quick --models tiny -v --durations=15 -o faulthandler_timeout=60 2>&1 \
    | stamp > /tmp/sweep/quick/tiny.log
  echo ${PIPESTATUS[0]} > /tmp/sweep/quick/tiny.exit
fi
for g in mamba2,falcon_mamba bamba; do
  ( timeout -s INT 600 python3 -m pytest -p no:cacheprovider -rs -m quick --archs $g -v --durations=25 -o faulthandler_timeout=60 2>&1 \
    | stamp > /tmp/sweep/quick/${g//,/-}.log; echo ${PIPESTATUS[0]} > /tmp/sweep/quick/${g//,/-}.exit ) &
done
wait; echo $(( $(date +%s) - start )) > /tmp/sweep/quick/wall_s
echo "$(date +%T) lane 0: done"
