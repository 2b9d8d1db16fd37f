"""How sensitive is synthetic-mamba2 (random weights, float32) at positions 254-257: logits' relative change when
the embeddings are perturbed by a relative 1e-7 (float32 rounding's size)?"""
import torch

from ssmbench.compare import relative_error
from ssmbench.inputs import PROMPTS
from ssmbench.loading import load
from ssmbench.registry import resolve_model_set

torch.set_num_threads(2)
spec = next(s for s in resolve_model_set("synthetic", archs=["mamba2"]))
lm = load(spec, torch.device("cpu"), torch.float32)
g = torch.Generator().manual_seed(1)
prompt = lm.encode(PROMPTS[2])["input_ids"]
ids = torch.cat([prompt, torch.randint(10, 50000, (1, 262 - prompt.shape[1]), generator=g)], dim=1)[:, :258]
base = lm.logits(ids, use_cache=False)
emb = lm.model.get_input_embeddings()
gen = torch.Generator().manual_seed(2)
h = emb.register_forward_hook(lambda m, a, o: o * (1 + 1e-7 * torch.randn(o.shape, generator=gen)))
pert = lm.logits(ids, use_cache=False)
h.remove()
for pos in (6, 7, 8, 9, 100, 200, 254, 255, 256, 257):
    print(pos, f"{relative_error(pert[:, pos], base[:, pos]):.3g}", flush=True)
hs = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
print("hidden-state rms by layer (every 8th), at position 255:",
      [f"{h[0, 255].float().pow(2).mean().sqrt().item():.3g}" for h in hs[::8]])
