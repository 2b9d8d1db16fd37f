"""Issue #14's first GPU step, a probe (run on the H200 on 2026-11-29: baselines/h200/runs/2026-11-29-night/native;
not part of the suite, which has the ``native`` backend since): the authors' implementation on the weights
transformers loaded. Builds the synthetic Mamba-1 (mamba-2.8b's configuration, random weights, bf16) with
transformers, hands the same tensors to mamba_ssm's ``MambaLMHeadModel`` (``ssmbench.native.native_model``: built
on the meta device, the state dict assigned, no second copy, no second random initialisation), then per context:

- greedy tokens of both for ``--new-tokens`` and the first step's logits, relative error;
- mamba_ssm's CUDA-graph decode per token, ``(t(1 + M) - t(2)) / (M - 1)`` over plain calls (a synchronize and
  a wall clock), and transformers' eager one the same way.

    PYTHONPATH=/tmp/kernels ssmbench native-probe --context 11 512 2048 16384 --new-tokens 33

One JSON line per context. Needs a GPU with mamba-ssm and causal-conv1d.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def per_token(call, new: int, calls: int) -> float:
    """(t(1 + M) - t(2)) / (M - 1), the median over ``calls`` pairs, after a warm-up of each length."""
    call(2), call(1 + new)
    return statistics.median((timed(lambda: call(1 + new)) - timed(lambda: call(2))) / (new - 1)
                             for _ in range(calls))


def main(argv: list[str] | None = None) -> int:
    from ssmbench.compare import relative_error
    from ssmbench.loading import load_model
    from ssmbench.native import native_model
    from ssmbench.registry import resolve_model_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, nargs="+", default=[11, 512, 2048, 16384])
    parser.add_argument("--new-tokens", type=int, default=33)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    spec = resolve_model_set("synthetic", archs=["mamba"])[0]
    device = torch.device("cuda")
    hf = load_model(spec, device, torch.bfloat16)
    native = native_model(hf, spec.arch)  # transformers' tensors, checked shared (ssmbench.native)
    for context in args.context:
        ids = torch.randint(10, hf.config.vocab_size - 10, (1, context), device=device)
        with torch.no_grad():
            ref = hf.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                              return_dict_in_generate=True, output_logits=True)
            out = native.generate(ids, max_length=context + args.new_tokens, cg=True, return_dict_in_generate=True,
                                  output_scores=True)
            same = int((ref.sequences[0, context:] == out.sequences[0, context:]).sum())
            row = {"context": context, "new_tokens": args.new_tokens, "same_tokens": same,
                   "first_logits_rel_error": relative_error(out.scores[0].float(), ref.logits[0].float()),
                   "native_ms_per_token": 1e3 * per_token(
                       lambda n, ids=ids, context=context: native.generate(ids, max_length=context + n, cg=True),
                       args.new_tokens, args.calls),
                   "transformers_eager_ms_per_token": 1e3 * per_token(
                       lambda n, ids=ids: hf.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False),
                       args.new_tokens, args.calls),
                   "torch": torch.__version__}
        print(json.dumps(row), flush=True)
    return 0
