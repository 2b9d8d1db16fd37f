cd /tmp/work && export PYTHONPATH=/tmp/kernels PYTHONUNBUFFERED=1
start=$(date +%s)
python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic --ssm-archs mamba,phi --backends eager,compiled,graphed --contexts 512,2048,8192,32768,65536,131072 \
  --calibrate --calibrate-contexts 512,131072 \
  --ssm-throughput-prompts 512 --ssm-batch-sizes 1,8,32 --ssm-throughput-new-tokens 32 \
  -k "not (test_throughput and (compiled or graphed))" \
  --benchmark-storage=file:///tmp/sweep/baselines --benchmark-save=synthetic-bf16 \
  --benchmark-columns=min,median,max,rounds --scaling-report /tmp/sweep/report \
  --results-file /tmp/sweep/points.json > /tmp/sweep/bench.log 2>&1
echo $? > /tmp/sweep/exit; echo $(( $(date +%s) - start )) > /tmp/sweep/wall_s
python3 scripts/plain_point.py phi --context 512 --new-tokens 33 --static-cache --calls 10 \
  > /tmp/sweep/plain/phi-compiled-decode-512.jsonl 2> /tmp/sweep/plain/phi.err
python3 scripts/plain_point.py mamba --context 131072 --calls 4 > /tmp/sweep/plain/mamba-prefill-131072.jsonl \
  2> /tmp/sweep/plain/mamba.err
touch /tmp/sweep/plain/done
if [ "1" = 1 ]; then
  # Issue #14's probe: mamba_ssm's MambaLMHeadModel on the weights transformers loaded, CUDA-graph decode.
  mkdir -p /tmp/sweep/native
  timeout -s INT 240 python3 scripts/native_probe.py --context 11 512 2048 8192 32768 --new-tokens 33 \
    > /tmp/sweep/native/probe.jsonl 2> /tmp/sweep/native/probe.err
  echo $? > /tmp/sweep/native/exit
fi
if [ "0" = 1 ]; then
  # The quick tier with the kernels, all architectures: three processes side by side on the one GPU (xdist gives
  # one worker per GPU; the tier asserts no timings, and its full-size models fit together: 6-18 GB each).
  mkdir -p /tmp/sweep/quick; start=$(date +%s)
  python3 -c "import torch, transformers, mamba_ssm, causal_conv1d as c; print(torch.__version__, transformers.__version__, mamba_ssm.__version__, c.__version__)" > /tmp/sweep/quick/versions.txt 2>&1
  for g in mamba,phi mamba2,falcon_mamba qwen2,llama bamba; do
    timeout -s INT 480 python3 -m pytest -p no:cacheprovider -rs -m quick --archs $g --durations=15 -o faulthandler_timeout=150 \
      > /tmp/sweep/quick/${g//,/-}.log 2>&1 &
  done
  wait; echo $(( $(date +%s) - start )) > /tmp/sweep/quick/wall_s
fi
if [ "0" = 1 ]; then
  start=$(date +%s)
  python3 -m pytest -p no:cacheprovider -rs -m benchmark --models synthetic --ssm-archs mamba2,falcon_mamba,qwen2,bamba --backends eager \
    --contexts 512,2048,8192,32768 -k "not isolation and not throughput" --calibrate --calibrate-contexts 512 \
    --benchmark-storage=file:///tmp/sweep/archs/baselines --benchmark-save=archs-eager-bf16 \
    --benchmark-columns=min,median,max,rounds --scaling-report /tmp/sweep/archs/report \
    --results-file /tmp/sweep/archs/points.json > /tmp/sweep/archs/bench.log 2>&1
  echo $? > /tmp/sweep/archs/exit; echo $(( $(date +%s) - start )) > /tmp/sweep/archs/wall_s
fi
touch /tmp/sweep/all-done
