"""Independent float64 reference implementations: Mamba's selective scan and Mamba-2's SSD as sequential
recurrences (Falcon-H1's muP multipliers and norm placements as parameters), causal softmax attention (rotary:
Phi's partial, grouped-query for Qwen2 and Llama; or none, as Nemotron-H's; a key multiplier, as Falcon-H1's; a
QK norm, as LFM2's), the squared-ReLU MLP, SwiGLU MLPs (fused, or separate gate and up with Falcon-H1's
multipliers), a top-k mixture of experts, LFM2's gated short convolution and Zamba2's shared attention and MLP with
their per-use adapters. They read only module weights and config values, never transformers' own helper
functions.

One module per family of layer kinds (``ssm``, ``attention``, ``mlp``), how a kind is run against its reference
(``layers``); every function is importable from here."""

from __future__ import annotations

from ._base import rms_norm
from .attention import attention, llama3_scaled, phi_attention, rope_settings, zamba2_attention
from .layers import capture, layer_pairs
from .mlp import fused_swiglu, gated_mlp, relu2_mlp, top_k_moe, zamba2_mlp
from .ssm import mamba2_mixer, mamba_mixer, short_conv

__all__ = [
    "attention",
    "capture",
    "fused_swiglu",
    "gated_mlp",
    "layer_pairs",
    "llama3_scaled",
    "mamba2_mixer",
    "mamba_mixer",
    "phi_attention",
    "relu2_mlp",
    "rms_norm",
    "rope_settings",
    "short_conv",
    "top_k_moe",
    "zamba2_attention",
    "zamba2_mlp",
]
