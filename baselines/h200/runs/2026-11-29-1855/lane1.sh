sweep() {  # sweep DIR NAME PYTEST-ARGS...
  local dir=$1 name=$2 start; shift 2; mkdir -p "$dir"; start=$(date +%s)
  python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic "$@" \
    --benchmark-storage="file://$dir/baselines" --benchmark-save="$name" --benchmark-columns=min,median,max,rounds \
    --scaling-report "$dir/report" --results-file "$dir/points.json" > "$dir/bench.log" 2>&1
  echo $? > "$dir/exit"; echo $(( $(date +%s) - start )) > "$dir/wall_s"
}
cd /tmp/work && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1
export CUDA_VISIBLE_DEVICES=1
taskset -pc 16-31 $$ > /dev/null
echo "$(date +%T) lane 1: quick"
# The quick tier with the kernels: optionally the tiny models of every architecture in one process first, then
# every model set's default (auto: tiny + full-size synthetic) in --archs groups, one after the other or side by side (the
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
for g in mamba2; do
  ( timeout -s INT 600 python3 -m pytest -p no:cacheprovider -rs -m quick --archs $g --models synthetic -k beam_search -v --durations=25 -o faulthandler_timeout=60 2>&1 \
    | stamp > /tmp/sweep/quick/${g//,/-}.log; echo ${PIPESTATUS[0]} > /tmp/sweep/quick/${g//,/-}.exit ) 
done
wait; echo $(( $(date +%s) - start )) > /tmp/sweep/quick/wall_s
echo "$(date +%T) lane 1: throughput-long"
# Issue #13: long context at batch (prompts 8192 and 32768, batch 1/4/16/64 until out of memory), every backend.
sweep /tmp/sweep/throughput-long throughput-long-bf16 --ssm-archs mamba,phi --backends eager,compiled,graphed,native \
  -k test_throughput --ssm-throughput-prompts 8192,32768 --ssm-batch-sizes 1,4,16,64 --ssm-throughput-new-tokens 128
echo "$(date +%T) lane 1: done"
