sweep() {  # sweep DIR NAME PYTEST-ARGS...
  local dir=$1 name=$2 start; shift 2; mkdir -p "$dir"; start=$(date +%s)
  python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic "$@" \
    --benchmark-storage="file://$dir/baselines" --benchmark-save="$name" --benchmark-columns=min,median,max,rounds \
    --scaling-report "$dir/report" --results-file "$dir/points.json" > "$dir/bench.log" 2>&1
  echo $? > "$dir/exit"; echo $(( $(date +%s) - start )) > "$dir/wall_s"
}
cd /tmp/work && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1
export CUDA_VISIBLE_DEVICES=0
taskset -pc 0-15 $$ > /dev/null
echo "$(date +%T) lane 0: throughput-check"
# Issue #13: the throughput points' energy (joules per generated token, NVML read around each whole call) and the
# decode figures, by the suite and plainly (scripts/plain_point.py --energy, fresh processes) at batch
# 16 128, on a GPU of its own; eager for phi-2 and Mamba (plain_point.py runs generate()).
sweep /tmp/sweep/throughput-check throughput-check-bf16 --ssm-archs mamba,phi --backends eager,compiled,native \
  -k test_throughput --ssm-throughput-prompts 2048 --ssm-batch-sizes 16,128 \
  --ssm-throughput-new-tokens 128
for a in mamba phi; do
  timeout -s INT 300 python3 scripts/plain_point.py $a --context 2048 --new-tokens 128 --batch 16 128 \
    --calls 4 --energy > /tmp/sweep/throughput-check/plain-$a.jsonl 2> /tmp/sweep/throughput-check/plain-$a.err
done
echo "$(date +%T) lane 0: done"
