#!/usr/bin/env bash
# How baselines/h200/BACKENDS.md was measured (device tool, H200 image: torch 2.11, transformers 5.17).
# Phase "kernels": mamba-ssm + causal-conv1d from ../shared/wheels (unpacked from .kernels/ into /tmp/kernels).
# Phase "nokernels": transformers' reference loop for Mamba, on 5.17 and on 4.46.3 (wheels carried in .t446/);
# phase "graphed-reference": the graphed backend on the reference loop (5.17), run after baselines/h200x2/xdist.sh.
# Phase "graphed-kernels": the graphed points again (5.17, kernels), after prefill kept only the last logits (c6eb74f);
# it leaves the kernels unpacked in /tmp/kernels for phase "kernels-4.46", the next call on the same warm machine
# (one carry cannot hold both kernel wheels and the 4.46.3 wheels): 4.46.3 with the kernels, its host-side
# cache_position path in the suite's graph.
# Every step writes under $OUT first, so a later step that fails or times out loses nothing measured before it.
set -u
phase=$1
R=$OUT/$phase; mkdir -p "$R"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.csv"
PYT="python3 -m pytest -p no:cacheprovider -rs"
if [ "$phase" = kernels ]; then
  mkdir -p /tmp/kernels && tar -xJf .kernels/mamba-kernels-h200.tar.xz -C /tmp/kernels
  export PYTHONPATH=/tmp/kernels
  python3 -c "import mamba_ssm, selective_scan_cuda, causal_conv1d, causal_conv1d_cuda; print('kernels load')" > "$R/kernels.txt" 2>&1
  timeout 110 $PYT -m "quick or conformance" -k "graphed or kernels_match or (compiled_backend and tiny)" \
    > "$R/parity.log" 2>&1
  timeout 400 $PYT -m benchmark --models synthetic -k "test_latency_decode or test_latency_quickstart" \
    --backends eager,compiled,graphed --contexts 512,2048,8192 --results-file "$R/points.json" > "$R/bench.log" 2>&1
elif [ "$phase" = graphed-kernels ]; then
  mkdir -p /tmp/kernels && tar -xJf .kernels/mamba-kernels-h200.tar.xz -C /tmp/kernels
  export PYTHONPATH=/tmp/kernels
  timeout 240 $PYT -m benchmark --models synthetic -k "synthetic-mamba and (test_latency_decode or test_latency_quickstart)" \
    --backends graphed --contexts 512,2048,8192 --results-file "$R/points.json" > "$R/bench.log" 2>&1
elif [ "$phase" = kernels-4.46 ]; then
  if [ ! -d /tmp/kernels/mamba_ssm ]; then
    echo "no /tmp/kernels on this machine: run phase graphed-kernels first, on the same warm machine" | tee "$R/error"
    exit 1
  fi
  mkdir -p /tmp/t446 && python3 -m pip install -q --no-index --no-deps --target /tmp/t446 .t446/*.whl > "$R/pip446.log" 2>&1
  export PYTHONPATH=/tmp/t446:/tmp/kernels
  python3 -c "import transformers, mamba_ssm, causal_conv1d; from transformers.models.mamba import modeling_mamba as m; \
print(transformers.__version__, 'fast path available:', m.is_fast_path_available)" > "$R/kernels.txt" 2>&1
  timeout 150 $PYT -m "quick or conformance" -k "graphed or compiled_backend or kernels_match" > "$R/parity-4.46.log" 2>&1
  timeout 150 $PYT -m benchmark --models synthetic -k "synthetic-mamba and test_latency_decode" \
    --backends eager,compiled --contexts 512,2048 --results-file "$R/points-4.46.json" > "$R/bench-4.46.log" 2>&1
elif [ "$phase" = graphed-reference ]; then  # the graphed point the nokernels phase ran out of time for
  timeout 100 $PYT -m benchmark --models synthetic -k "synthetic-mamba and test_latency_decode" \
    --backends graphed --contexts 512 --results-file "$R/points.json" > "$R/bench.log" 2>&1
else
  timeout 100 $PYT -m benchmark --models synthetic -k "synthetic-mamba and test_latency_decode" \
    --backends eager,compiled,graphed --contexts 512 --results-file "$R/points.json" > "$R/bench.log" 2>&1
  mkdir -p /tmp/t446 && python3 -m pip install -q --no-index --no-deps --target /tmp/t446 .t446/*.whl > "$R/pip446.log" 2>&1
  PYTHONPATH=/tmp/t446 timeout 120 $PYT -m "quick or conformance" -k "graphed or compiled_backend" \
    > "$R/parity-4.46.log" 2>&1
  PYTHONPATH=/tmp/t446 timeout 120 $PYT -m benchmark --models synthetic -k "synthetic-mamba and test_latency_decode" \
    --backends eager,compiled --contexts 512 --results-file "$R/points-4.46.json" > "$R/bench-4.46.log" 2>&1
fi
echo "phase $phase done" > "$R/done"
