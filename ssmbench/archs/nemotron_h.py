"""Nemotron-H: nvidia/Nemotron-H-8B-Base-8K, a hybrid of three kinds of layer, each a block of its own behind a
pre-norm and a residual: Mamba-2 mixers (24 of 52), squared-ReLU MLPs (24) and grouped-query attention without
any position encoding (4, at 7, 18, 29 and 40). transformers has nemotron_h from 5.3.0, but its layer kinds there
are Mamba, attention and MoE only: the dense MLP ("-" in hybrid_override_pattern), which Nemotron-H-8B is built
of, came in 5.6 (5.3.0 ... 5.5.4 raise KeyError '-' on the pattern, huggingface/transformers#45300; 5.6.2 builds
it). 5.14.x cannot generate with it at all: its DynamicCache has no "mlp" layer type (KeyError 'mlp',
huggingface/transformers#47534; right again on 5.15.1). Both ranges are ``unrunnable``: its checks skip there,
saying why.

Its mixer resolves its kernels as Bamba's does on every release (a fast-path flag before 5.15, then wrappers of
the same names): the probe reads torch-reference on the CPU and the reference path is verified there on 5.6.2,
5.10.4, 5.15.1, 5.20.2, 5.24.0 and 5.25.0; the CUDA kernels themselves were not run with it. On 5.15 ... 5.24
dt is clamped at time_step_min in prefill but not in the one-token step; on the tiny model (4-6 % of its dt under
0.001) the step-decode check reads 0.7-1.5e-6 there (0.3-0.5e-6 on 5.25.0), far under its 1e-4: no Known."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Kernels, Known, Layer, attention_cache_bytes, mamba2_layer_bytes
from .mamba2 import MAMBA2_KERNEL_OPS


def _count(config, kind: str) -> int:
    """Layers of one kind ("M" Mamba-2, "*" attention, "-" MLP): every release from 5.6 reads the pattern back
    from its list of layer kinds, whose names changed in 5.13 (mamba/attention, then linear/full_attention)."""
    return config.hybrid_override_pattern.count(kind)


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Mamba-2 state for each Mamba layer (conv channels ``heads x head_dim + 2 x groups x state``, model dtype; a
    [head_dim x state] SSM state per head, float32 on 5.x) plus K and V per token for each attention layer; the
    MLP layers keep nothing."""
    mamba_layers = _count(config, "M") * mamba2_layer_bytes(
        config.mamba_num_heads, config.mamba_head_dim, config.n_groups, config.ssm_state_size, config.conv_kernel,
        dtype)
    return batch * mamba_layers + attention_cache_bytes(config, context, dtype, batch, layers=_count(config, "*"))


def _mixers(model, name: str) -> list:
    """The blocks' mixers of one class (NemotronHMamba2Mixer, NemotronHAttention, NemotronHMLP: the same names on
    every release from 5.6), in order."""
    return [layer.mixer for layer in model.model.layers if type(layer.mixer).__name__ == name]


def mixers(model) -> list:
    return [(m, lambda hidden, m=m: reference.mamba2_mixer(m, hidden)) for m in _mixers(model, "NemotronHMamba2Mixer")]


def attention(model) -> list:
    return [(a, lambda hidden, a=a: reference.attention(a, hidden, model.config, "o_proj", rotary=False))
            for a in _mixers(model, "NemotronHAttention")]


def mlps(model) -> list:
    return [(m, lambda hidden, m=m: reference.relu2_mlp(m, hidden)) for m in _mixers(model, "NemotronHMLP")]


KNOWN = (
    Known(
        'nemotron_h-inter-chunk-recurrence',
        (
            'test_step_decode_logits_match_full_forward',
            'test_scores_and_logits_of_a_cached_run_equal_an_uncached_runs',
            'test_decode_on_both_sides_of_every_block_boundary',
            'test_beam_search_with_cache_equals_without',
            'test_padded_batch_of_one_equals_unpadded',
            'test_prompt_prefilled_in_two_chunks_equals_one_shot',
            'test_layer_matches_float64_reference[layer_kind=mamba2]',
        ),
        '>=5.6,<5.15',
        'transformers 5.6 ... 5.14 (the mixer against its float64 reference on every minor: wrong from the second '
        'SSD chunk on, 0.1-0.3 %, on 5.6.2 ... 5.14.1, right from 5.15.1; these checks fail on 5.6.2, 5.10.4, 5.12.1, '
        "5.13.1): Nemotron-H's PyTorch SSD path sums the inter-chunk recurrence over the wrong axis, so every "
        'chunk after the first starts from a wrong state; summing over the source chunk instead (one line) makes '
        'all of them pass on 5.13.1: huggingface/transformers#47246',
    ),
    Known(
        'chunked-prefill-nemotron_h',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '<5.13',
        "transformers < 5.13 (fails on 5.6.2, 5.10.4, 5.12.1; still on 5.10.4 with the inter-chunk recurrence above "
        "patched): Nemotron-H's Mamba-2 mixer took a multi-token input with a cache as one decode step (5.6.2 ... "
        '5.12.1 gate it on the cache alone, not on one token; 5.13.1 does): fixed by huggingface/transformers#46741',
    ),
)


ARCH = Arch(
    key="nemotron_h",
    family="hybrid",
    model_type="nemotron_h",
    hub_id="nvidia/Nemotron-H-8B-Base-8K",
    # Nemotron-H-8B's configuration (docs/research/hybrid-configs.md). The Mamba fields under their mamba_* names,
    # which every release reads (5.25 maps them to n_groups, conv_kernel, expand, chunk_size, use_conv_bias).
    synthetic_config=dict(
        vocab_size=131072, hidden_size=4096, num_hidden_layers=52,
        hybrid_override_pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
        intermediate_size=21504, mlp_hidden_act="relu2", num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        mamba_num_heads=128, mamba_head_dim=64, ssm_state_size=128, mamba_n_groups=8, mamba_d_conv=4,
        mamba_expand=2, mamba_chunk_size=256, mamba_conv_bias=True, mamba_proj_bias=False, use_bias=False,
        mlp_bias=False, attention_bias=False, layer_norm_epsilon=1e-5, tie_word_embeddings=False,
        max_position_embeddings=8192,
    ),
    published_params=8.10e9,  # "8B"; 8,100,852,736 by a safetensors analysis, and the configuration above builds
    published_digits=3,       # 8,100,852,736 (meta device; 5.6.2, 5.10.4, 5.13.1, 5.15.1, 5.20.2 and 5.25.0)
    # Every kind with a first and a last layer of it apart but attention (one): Mamba 0 and 3, attention 1, MLP 2
    # and 4; n_groups 2, where transformers' Mamba-2 code has gone wrong before.
    tiny_config=dict(hybrid_override_pattern="M*-M-", num_hidden_layers=5, hidden_size=64, intermediate_size=128,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, mamba_num_heads=8,
                     mamba_head_dim=16, ssm_state_size=16, mamba_n_groups=2, mamba_d_conv=4, mamba_expand=2,
                     mamba_chunk_size=8, max_position_embeddings=2048, tie_word_embeddings=False),
    tiny_pad_token=True,  # NemotronHConfig's pad_token_id is 0; the real tokenizer's was not checked here
    cache_bytes=cache_bytes,
    layers={"mamba2": Layer(mixers, "float64 sequential SSD recurrence"),
            "attention": Layer(attention, "float64 grouped-query softmax attention, no position encoding"),
            "mlp": Layer(mlps, "float64 squared-ReLU MLP")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.nemotron_h.modeling_nemotron_h", ops=MAMBA2_KERNEL_OPS),
    min_transformers="5.3.0",
    unrunnable=(
        (">=5.3,<5.6", "its nemotron_h has Mamba, attention and MoE layers only, not the dense MLP ('-') Nemotron-H-8B "
                       "is built of (5.3.0 ... 5.5.4 raise KeyError '-' on the pattern; 5.6.2 builds it)"),
        (">=5.14,<5.15", "generate() raises KeyError 'mlp': 5.14's DynamicCache has no MLP layer type "
                         "(huggingface/transformers#47534; 45 checks failed on 5.14.1, right again on 5.15.1)"),
    ),
    boundaries=('conv_kernel', 'chunk_size'),
)
