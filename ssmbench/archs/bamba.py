"""Bamba: ibm-fms/Bamba-9B, a hybrid -- Mamba-2 mixers in every layer but three grouped-query attention layers
(9, 18, 27 of 32; partial rotary 0.5). Chosen among the hybrids transformers implements (Bamba, Zamba2,
FalconH1, GraniteMoeHybrid, Jamba, NemotronH; all generate with and without a cache on CPU in 5.24) as the
plainest: dense, the Mamba-2 mixer as is, Llama-style attention, no dt-limit inconsistency between its prefill
and decode paths (Zamba2 and NemotronH clamp dt only in prefill). transformers has it from 4.48.0."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Kernels, attention_cache_bytes, ssm_layer_bytes
from .mamba2 import MAMBA2_KERNEL_OPS


def _attention_layers(config) -> list[int]:
    return list(config.attn_layer_indices or [])


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Mamba-2 state for each Mamba layer (conv channels ``expand x hidden + 2 x groups x state``, model dtype;
    a [head_dim x state] SSM state per head, float32 on 5.x) plus K and V per token for each attention layer."""
    attention = len(_attention_layers(config))
    conv_dim = int(config.mamba_expand * config.hidden_size) + 2 * config.mamba_n_groups * config.mamba_d_state
    state = config.mamba_n_heads * config.mamba_d_head * config.mamba_d_state
    mamba_layers = (config.num_hidden_layers - attention) * ssm_layer_bytes(conv_dim, config.mamba_d_conv, state, dtype)
    return batch * mamba_layers + attention_cache_bytes(config, context, dtype, batch, layers=attention)


def layer_reference(model, index: int):
    layer = model.model.layers[index]
    if hasattr(layer, "mamba"):
        return layer.mamba, lambda hidden: reference.mamba2_mixer(layer.mamba, hidden)
    return layer.self_attn, lambda hidden: reference.attention(layer.self_attn, hidden, model.config, "o_proj")


ARCH = Arch(
    key="bamba",
    family="hybrid",
    model_type="bamba",
    hub_id="ibm-fms/Bamba-9B",
    # Bamba-9B's configuration as transformers' conversion script (bamba/convert_mamba_ssm_checkpoint.py) writes
    # it from the mamba_ssm one; rope_theta, max_position_embeddings and the special ids were not found
    # published: transformers' defaults are used (timing and memory do not depend on them).
    synthetic_config=dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        attn_layer_indices=[9, 18, 27], num_attention_heads=32, num_key_value_heads=8, mamba_n_heads=128,
        mamba_d_head=64, mamba_n_groups=1, mamba_d_state=128, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=256,
        mamba_conv_bias=True, mamba_proj_bias=False, rms_norm_eps=1e-5, tie_word_embeddings=False,
    ),
    published_params=9.78e9,  # "9.78B"; the configuration above builds 9,780,235,392
    published_digits=3,
    # Three layers, the last one attention: the float64 check (layers 0 and -1) covers a Mamba-2 mixer and
    # the grouped-query attention; n_groups 2, where transformers' Mamba-2 code has gone wrong before.
    tiny_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, attn_layer_indices=[2],
                     num_attention_heads=4, num_key_value_heads=2, mamba_n_heads=8, mamba_d_head=16,
                     mamba_n_groups=2, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8,
                     max_position_embeddings=2048, tie_word_embeddings=False),
    tiny_pad_token=True,
    cache_bytes=cache_bytes,
    layer_reference=layer_reference,
    reference_name="float64 sequential SSD recurrence (Mamba layers) / grouped-query softmax attention",
    kernels=Kernels(module="transformers.models.bamba.modeling_bamba", ops=MAMBA2_KERNEL_OPS),
    min_transformers="4.48.0",
)
