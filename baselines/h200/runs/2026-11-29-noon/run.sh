sweep() {  # sweep DIR NAME PYTEST-ARGS...
  local dir=$1 name=$2 start; shift 2; mkdir -p "$dir"; start=$(date +%s)
  python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic "$@" \
    --benchmark-storage="file://$dir/baselines" --benchmark-save="$name" --benchmark-columns=min,median,max,rounds \
    --scaling-report "$dir/report" --results-file "$dir/points.json" > "$dir/bench.log" 2>&1
  echo $? > "$dir/exit"; echo $(( $(date +%s) - start )) > "$dir/wall_s"
}
cd /tmp/work && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1
# Issue #12: the two long compiled decodes the baseline's calibration left undecided (6 pairs in 30 s), given
# UNDECIDED_S seconds of pairs each.
sweep /tmp/sweep/undecided undecided-bf16 --ssm-archs mamba,phi --backends compiled -k test_latency_decode \
  --contexts 131072 --calibrate --calibrate-contexts 131072 --ssm-calibrate-max-time 360
# Issue #14: Mamba's fast decodes side by side at 512 ... 32768 (transformers' compiled, the suite's graph,
# mamba-ssm's native), calibrated at 512 and 32768; then one step kernel by kernel, both sides.
sweep /tmp/sweep/native-decode native-bf16 --ssm-archs mamba --backends compiled,graphed,native -k test_latency_decode \
  --contexts 512,2048,8192,32768 --calibrate --calibrate-contexts 512,32768
timeout -s INT 240 python3 scripts/profile_step.py --context 2048 --steps 50 \
  --out /tmp/sweep/native-decode/profile > /tmp/sweep/native-decode/profile.log 2>&1
# The quick tier with the kernels: first the tiny models of every architecture in one process (kernel parity of
# each SSM architecture with kernels), then every model set's default (auto: tiny + full-size synthetic) in four
# --archs groups side by side on the one GPU (the tier asserts no timings; the groups' models fit together).
mkdir -p /tmp/sweep/quick; start=$(date +%s)
python3 -c "import torch, transformers, mamba_ssm, causal_conv1d as c; print(torch.__version__, transformers.__version__, mamba_ssm.__version__, c.__version__)" > /tmp/sweep/quick/versions.txt 2>&1
timeout -s INT 200 python3 -m pytest -p no:cacheprovider -rs -m quick --models tiny --durations=15 -o faulthandler_timeout=150 \
  > /tmp/sweep/quick/tiny.log 2>&1
echo $? > /tmp/sweep/quick/tiny.exit
for g in mamba,phi mamba2,falcon_mamba qwen2,llama bamba; do
  timeout -s INT 480 python3 -m pytest -p no:cacheprovider -rs -m quick --archs $g --durations=25 -o faulthandler_timeout=150 \
    > /tmp/sweep/quick/${g//,/-}.log 2>&1 &
done
wait; echo $(( $(date +%s) - start )) > /tmp/sweep/quick/wall_s
touch /tmp/sweep/all-done
