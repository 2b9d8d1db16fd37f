"""synthetic-mamba2's block-boundary check on the CPU (transformers' torch path): is 5.6 % at a 255-token prompt the
kernels' or the model's (random weights, float32)? The prompt's first tokens, then seeded random ones (as the check
now does past its 24 generated tokens). Run from the repository root:
PYTHONPATH=. python baselines/h100/quick/cpu-check/boundary.py 255 256 257"""
import sys
import time

import torch
from transformers import LogitsProcessorList

from ssmbench.compare import relative_error
from ssmbench.inputs import PROMPTS
from ssmbench.loading import load
from ssmbench.registry import resolve_model_set
from tests.conformance.test_cache import ForceTokens

torch.set_num_threads(2)
spec = next(s for s in resolve_model_set("synthetic", archs=["mamba2"]))
t = time.time()
lm = load(spec, torch.device("cpu"), torch.float32)
print("load", round(time.time() - t), "s", flush=True)
g = torch.Generator().manual_seed(1)
prompt = lm.encode(PROMPTS[2])["input_ids"]
ids = torch.cat([prompt, torch.randint(10, 50000, (1, 262 - prompt.shape[1]), generator=g)], dim=1)
print("noise floor", lm.noise_floor, flush=True)
for length in [int(a) for a in sys.argv[1:]] or [255]:
    seq = ids[:, : length + 3]
    t = time.time()
    full = lm.logits(seq, use_cache=False)
    out = lm.generate(seq[:, :length], max_new_tokens=3, min_new_tokens=3, use_cache=True,
                      logits_processor=LogitsProcessorList([ForceTokens(seq[:, length:])]),
                      return_dict_in_generate=True, output_logits=True)
    steps = torch.stack(out.logits, dim=1)
    ref = full[:, length - 1: -1]
    print("rounding floors at the three positions",
          [f"{f:.2g}" for f in lm.rounding_floors(seq, full, range(length - 1, length + 2))], flush=True)
    print(length, "relative error", relative_error(steps, ref), "per step",
          [round(relative_error(steps[:, i], ref[:, i]), 5) for i in range(3)], round(time.time() - t), "s", flush=True)
