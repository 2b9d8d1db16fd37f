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
echo "$(date +%T) lane 1: throughput-long"
# Issue #13: long context at batch (prompts 8192 and 32768, batch 1/4/16/64 until out of memory), every backend.
sweep /tmp/sweep/throughput-long throughput-long-bf16 --ssm-archs phi --backends compiled \
  -k test_throughput --ssm-throughput-prompts 32768 --ssm-batch-sizes 1,4,16,64 --ssm-throughput-new-tokens 128
echo "$(date +%T) lane 1: done"
