"""Mamba (v1): state-spaces/mamba-2.8b-hf, the reference pair's SSM."""

from __future__ import annotations

import torch

from .. import reference
from ..native import NativeMap
from .base import Arch, Kernels, ssm_layer_bytes

# The wrappers transformers' Mamba-1 modeling modules call (mamba, falcon_mamba), by operation.
MAMBA1_KERNEL_OPS = {"selective_scan": "mamba_selective_scan", "selective_state_update": "mamba_selective_state_update",
                     "causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update"}
# Seen 4.56.2 ... 5.14.1: the module-level kernel functions (None when absent) the forward checks instead.
MAMBA1_GLOBAL_OPS = {"selective_scan": "selective_scan_fn", "selective_state_update": "selective_state_update",
                     "causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update"}


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """``layers x intermediate x (state_size + conv_kernel)`` values per sequence whatever the context; the SSM
    state in float32 on transformers 5.x (see compat)."""
    inner = config.intermediate_size
    return batch * config.num_hidden_layers * ssm_layer_bytes(inner, config.conv_kernel, inner * config.state_size,
                                                              dtype)


def native_config(config) -> dict:
    """mamba-ssm's ``MambaConfig`` for a transformers ``MambaConfig`` (the mapping of transformers' conversion
    script, ``convert_mamba_ssm_checkpoint_to_pytorch.py``, read the other way): no MLP, RMSNorm with the fused
    add-norm, the residual in float32 as configured, no vocabulary padding (the weights have their shape).
    What mamba-ssm's config cannot say (its norms' epsilon is fixed at 1e-5, its inner width is expand x d_model)
    is refused, not approximated."""
    if (config.layer_norm_epsilon != 1e-5 or config.intermediate_size != config.expand * config.hidden_size
            or config.hidden_act != "silu"):
        raise ValueError(f"mamba-ssm's MambaConfig fixes the norms' epsilon at 1e-5, the inner width at expand x "
                         f"hidden_size and the activation at silu; this model has {config.layer_norm_epsilon:g}, "
                         f"{config.intermediate_size} (expand {config.expand} x {config.hidden_size}) and "
                         f"{config.hidden_act}")
    return dict(d_model=config.hidden_size, n_layer=config.num_hidden_layers, vocab_size=config.vocab_size,
                d_intermediate=0, rms_norm=True, residual_in_fp32=config.residual_in_fp32, fused_add_norm=True,
                pad_vocab_size_multiple=1, tie_embeddings=config.tie_word_embeddings,
                ssm_cfg=dict(layer="Mamba1", d_state=config.state_size, d_conv=config.conv_kernel,
                             expand=config.expand, dt_rank=config.time_step_rank, conv_bias=config.use_conv_bias,
                             bias=config.use_bias))


def layer_reference(model, index: int):
    mixer = model.backbone.layers[index].mixer
    return mixer, lambda hidden: reference.mamba_mixer(mixer, hidden)


ARCH = Arch(
    key="mamba",
    family="ssm",
    model_type="mamba",
    hub_id="state-spaces/mamba-2.8b-hf",
    synthetic_config=dict(
        vocab_size=50280, hidden_size=2560, num_hidden_layers=64, state_size=16, expand=2,
        intermediate_size=5120, conv_kernel=4, time_step_rank=160, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    ),
    published_params=2.768e9,
    published_digits=4,
    tiny_config=dict(hidden_size=64, num_hidden_layers=4, state_size=16, expand=2, intermediate_size=128,
                     conv_kernel=4, time_step_rank=8, use_bias=False, use_conv_bias=True, tie_word_embeddings=True),
    tiny_pad_token=True,  # like the real GPT-NeoX tokenizer
    cache_bytes=cache_bytes,
    layer_reference=layer_reference,
    reference_name="float64 sequential scan",
    kernels=Kernels(module="transformers.models.mamba.modeling_mamba", ops=MAMBA1_KERNEL_OPS,
                    global_ops=MAMBA1_GLOBAL_OPS, global_extra=(("mamba_inner_fn",),)),
    suite_graph=True,
    native=NativeMap(native_config, renames=(("backbone.embeddings.", "backbone.embedding."),)),
)
