"""Zamba2's Mamba-2 mixer clamps dt at config.time_step_min in prefill but not in the one-token decode step
(transformers 5.15 ... 5.25; 4.49 ... 5.14 clamp in both). A model whose softplus(dt) falls under time_step_min
then decodes differently from its own full forward pass. CPU, a tiny random config, nothing downloaded:

    python docs/repros/zamba2-dt-clamp.py

prints the largest difference between the logits of generate()'s first cached decode step and those of a full
forward pass over the same tokens, as transformers runs it and with the prefill's clamp removed (time_step_min 0:
both paths then compute the same thing). Any release from 4.49 reads the same script; one SSD chunk (13 tokens
under chunk_size 256) and one shared block keep it clear of the other Zamba2 bugs of 4.49 ... 5.16."""

import torch
import transformers
from transformers import Zamba2Config, Zamba2ForCausalLM

config = Zamba2Config(vocab_size=128, hidden_size=64, num_hidden_layers=4, intermediate_size=128,
                      layers_block_type=["mamba", "hybrid", "mamba", "mamba"], num_attention_heads=4,
                      n_mamba_heads=8, mamba_d_state=16, mamba_ngroups=1, num_mem_blocks=1,
                      adapter_rank=8, time_step_min=0.01)  # half the heads' dt under the clamp (below)
torch.manual_seed(0)
model = Zamba2ForCausalLM(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("dt_bias"):  # softplus(dt_bias) 1e-3 ... 1e-1 across heads: some under time_step_min
            p.copy_(torch.log(torch.expm1(torch.logspace(-3, -1, p.numel()))))
        elif p.dim() > 1:
            p.normal_(0, 0.2)  # a trained model's weights, roughly: logits far from zero


def step_vs_full(model) -> float:
    """generate() two tokens greedily (a prefill, then one cached decode step) and compare the decode step's
    logits with a full forward pass over the prompt and the first token generated, relative to the largest."""
    prompt = torch.randint(2, 128, (1, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, min_new_tokens=2,
                             do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0)
        full = model(input_ids=out.sequences[:, :-1]).logits[:, -1]
    return float((full - out.logits[1]).abs().max() / full.abs().max())


print(f"transformers {transformers.__version__}")
print(f"with the clamp (time_step_min {config.time_step_min}): step vs full forward {step_vs_full(model):.1e} "
      "(relative to the largest logit; the suite's check allows 1e-4)")
for module in model.modules():
    if hasattr(module, "time_step_min"):
        module.time_step_min = 0.0  # 4.x reads it in both paths
    if hasattr(module, "time_step_limit"):
        module.time_step_limit = (0.0, float("inf"))  # 5.15+: the prefill's clamp
print(f"without it: step vs full forward {step_vs_full(model):.1e}")
