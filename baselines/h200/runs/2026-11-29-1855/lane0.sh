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
echo "$(date +%T) lane 0: throughput"
# Issue #13: the Mamba paper's throughput experiment (prompt 2048, 128 new tokens, batch 1 ... 256 until out of
# memory) for every backend; the batches of THROUGHPUT_CALIBRATE (1,16; none: empty) calibrated against plain
# generate() of the same batch, alternating (2026-11-29 16:07's phi-2 run was checked only across machines).
sweep /tmp/sweep/throughput throughput-bf16 --ssm-archs mamba --backends eager,compiled,graphed,native \
  -k test_throughput --ssm-throughput-prompts 2048 --ssm-batch-sizes 1,2,4,8,16,32,64,128,256 \
  --ssm-throughput-new-tokens 128 --ssm-calibrate --ssm-calibrate-batches 1,16
echo "$(date +%T) lane 0: done"
