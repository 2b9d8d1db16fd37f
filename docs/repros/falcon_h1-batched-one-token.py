"""Falcon-H1 with mamba_rms_norm (the 3B's configuration) on transformers < 5.23: a batch of more than one sequence
fed one token at a time (every cached decode step of a batched or beam generate()) comes out with a sequence
dimension as long as the batch. FalconH1RMSNormGated squeezes dimension 1 whenever seq_len == 1, so the mixer
returns [batch, hidden] and adding the attention's [batch, 1, hidden] broadcasts to [batch, batch, hidden].
5.23.0 squeezes only a 2-D input. Runs on a CPU in a second:

    PYTHONPATH=/work/versions/transformers-5.22.2 python docs/repros/falcon_h1-batched-one-token.py  # (2, 2, 64)
    PYTHONPATH=/work/versions/transformers-5.23.0 python docs/repros/falcon_h1-batched-one-token.py  # (2, 1, 64)
"""

import torch
import transformers
from transformers import FalconH1Config, FalconH1ForCausalLM

config = FalconH1Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, mamba_d_ssm=64, mamba_n_heads=4,
                        mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=8, mamba_rms_norm=True)
torch.manual_seed(0)
model = FalconH1ForCausalLM(config).eval()
ids = torch.randint(0, 64, (2, 1))
with torch.no_grad():
    shape = tuple(model(input_ids=ids).logits.shape)
print(transformers.__version__, "logits of a [2, 1] input:", shape, "OK" if shape == (2, 1, 64) else "WRONG")
