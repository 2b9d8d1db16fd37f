"""Mamba-2: state-spaces/mamba2-2.7b (SSD: scalar decay per head, a [head_dim x 128] state per head).

The tiny checkpoint has n_groups 2 (mamba2-2.7b has 1; Mamba-Codestral 8): transformers' grouped paths are
where its Mamba-2 was wrong for releases (ssmbench.compat.KNOWN_DIFFERENCES, mamba2-*)."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Kernels, ssm_layer_bytes


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Per layer and sequence, whatever the context: the conv state over ``expand x hidden + 2 x n_groups x
    state_size`` channels (model dtype) and a [head_dim x state_size] SSM state per head (float32 on 5.x)."""
    conv_dim = int(config.expand * config.hidden_size) + 2 * config.n_groups * config.state_size
    state = config.num_heads * config.head_dim * config.state_size
    return batch * config.num_hidden_layers * ssm_layer_bytes(conv_dim, config.conv_kernel, state, dtype)


MAMBA2_KERNEL_OPS = {"selective_scan": "mamba2_chunk_scan", "selective_state_update": "mamba2_selective_state_update",
                     "causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update"}


def layer_reference(model, index: int):
    mixer = model.backbone.layers[index].mixer
    return mixer, lambda hidden: reference.mamba2_mixer(mixer, hidden)


ARCH = Arch(
    key="mamba2",
    family="ssm",
    model_type="mamba2",
    hub_id="state-spaces/mamba2-2.7b",
    # mamba2-2.7b's mamba_ssm config (d_model 2560, n_layer 64, vocab 50277 padded to a multiple of 16, tied,
    # rms norm, residual in fp32) in transformers' Mamba2 names, with mamba_ssm's Mamba2 defaults (d_state 128,
    # headdim 64, ngroups 1, d_conv 4, expand 2, chunk 256). Its checkpoint is in mamba_ssm's format: the
    # pretrained source needs a converted copy (transformers' convert_mamba2_ssm_checkpoint_to_pytorch.py).
    synthetic_config=dict(
        vocab_size=50288, hidden_size=2560, num_hidden_layers=64, state_size=128, expand=2, head_dim=64,
        num_heads=80, n_groups=1, conv_kernel=4, chunk_size=256, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=True, time_step_limit=(0.0, float("inf")),
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    ),
    published_params=2.7e9,  # "2.7B" (the configuration above builds 2,702,599,680)
    published_digits=2,
    tiny_config=dict(hidden_size=64, num_hidden_layers=4, state_size=16, expand=2, head_dim=16, num_heads=8,
                     n_groups=2, conv_kernel=4, chunk_size=8, use_bias=False, use_conv_bias=True,
                     tie_word_embeddings=True),
    tiny_pad_token=True,  # GPT-NeoX's tokenizer, as Mamba's
    cache_bytes=cache_bytes,
    layer_reference=layer_reference,
    reference_name="float64 sequential SSD recurrence",
    kernels=Kernels(module="transformers.models.mamba2.modeling_mamba2", ops=MAMBA2_KERNEL_OPS),
)
