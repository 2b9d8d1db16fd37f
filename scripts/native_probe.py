"""Issue #14's first GPU step, a probe (not yet run; not part of the suite): the authors' implementation on the
weights transformers loaded. Builds the synthetic Mamba-1 (mamba-2.8b's configuration, random weights, bf16)
with transformers, hands the same tensors to mamba_ssm's ``MambaLMHeadModel`` (built on the meta device, the
state dict assigned: no second copy, no second random initialisation), then per context:

- greedy tokens of both for ``--new-tokens`` and the first step's logits, relative error;
- mamba_ssm's CUDA-graph decode per token, ``(t(1 + M) - t(2)) / (M - 1)`` over plain calls (a synchronize and
  a wall clock), and transformers' eager one the same way.

    PYTHONPATH=/tmp/kernels python scripts/native_probe.py --context 11 512 2048 16384 --new-tokens 33

One JSON line per context. Needs a GPU with mamba-ssm and causal-conv1d.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def native_config(config) -> dict:
    """mamba_ssm's MambaConfig fields for a transformers MambaConfig (the checkpoint converter's mapping)."""
    return dict(d_model=config.hidden_size, n_layer=config.num_hidden_layers, vocab_size=config.vocab_size,
                d_intermediate=0, rms_norm=True, residual_in_fp32=config.residual_in_fp32, fused_add_norm=True,
                pad_vocab_size_multiple=1, tie_embeddings=config.tie_word_embeddings,
                ssm_cfg=dict(layer="Mamba1", d_state=config.state_size, d_conv=config.conv_kernel,
                             expand=config.expand, dt_rank=config.time_step_rank, conv_bias=config.use_conv_bias,
                             bias=config.use_bias))


def native_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' Mamba keys -> mamba_ssm's: only the embedding is named differently."""
    return {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in state.items()}


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


def main() -> None:
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    from ssmbench.compare import relative_error
    from ssmbench.loading import load_model
    from ssmbench.registry import resolve_model_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, nargs="+", default=[11, 512, 2048, 16384])
    parser.add_argument("--new-tokens", type=int, default=33)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    spec = resolve_model_set("synthetic", archs=["mamba"])[0]
    device = torch.device("cuda")
    hf = load_model(spec, device, torch.bfloat16)
    with torch.device("meta"):
        native = MambaLMHeadModel(MambaConfig(**native_config(hf.config)), dtype=torch.bfloat16)
    missing, unexpected = native.load_state_dict(native_state_dict(hf.state_dict()), strict=False, assign=True)
    native.tie_weights()
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    native.eval()
    shared = sum(a.data_ptr() == b.data_ptr() for a, b in zip(hf.parameters(), native.parameters(), strict=False))
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
                   "parameters_shared": shared, "torch": torch.__version__}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
