"""Granite 4.0-H: ibm-granite/granite-4.0-h-tiny (transformers' granitemoehybrid), a hybrid of Mamba-2 mixers (36
of 40 layers) and grouped-query attention without position encoding (layers 5, 15, 25, 35), every layer followed
by a sparse mixture of experts (64 experts, 6 a token) beside a shared SwiGLU MLP, with muP-style multipliers: the
embeddings times 12, each residual branch times 0.22, attention scores times 1/128 (not 1/sqrt(head_dim)), the
logits divided by 6. 6.94B parameters, about 1B active a token; the summary pairs it by its total size (its
weights and cache are what decode reads).

Layer kinds, each against its float64 reference: the Mamba-2 mixer (Bamba's, copied), the attention (with the
attention multiplier as its scale), the mixture of experts (router, top-k softmax over the picked logits, SwiGLU
experts: the weights sit in ``router.layer`` / ``input_linear`` / ``output_linear`` before 5.20 and in
``router.weight`` / ``experts.gate_up_proj`` / ``experts.down_proj`` from it; both read) and the shared MLP.
transformers has granitemoehybrid from 4.52.0. Its layer kinds are saved as "mamba" / "attention" in the tiny
checkpoint: 5.13 renamed them "linear_attention" / "full_attention" and maps the old names on load, while 4.52 ...
5.12 accept only the old ones."""

from __future__ import annotations

import torch

from .. import reference
from .bamba import HYBRID_CACHE_CHECKS, _grouped, mixers
from .base import LEGACY_LAYER_NAMES, Arch, Kernels, Known, Layer, attention_cache_bytes, mamba2_layer_bytes
from .mamba2 import MAMBA2_KERNEL_OPS


def _is_attention(kind: str) -> bool:
    return kind in ("attention", "full_attention")


def _attention_layers(config) -> int:
    return sum(_is_attention(k) for k in config.layers_block_type)


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Mamba-2 state for each Mamba layer (conv channels ``heads x head_dim + 2 x groups x state``, model dtype; a
    [head_dim x state] SSM state per head, float32 on 5.x) plus K and V per token for each attention layer; the
    experts and the shared MLP keep nothing."""
    attention = _attention_layers(config)
    mamba_layers = (config.num_hidden_layers - attention) * mamba2_layer_bytes(
        config.mamba_n_heads, config.mamba_d_head, config.mamba_n_groups, config.mamba_d_state, config.mamba_d_conv,
        dtype)
    return batch * mamba_layers + attention_cache_bytes(config, context, dtype, batch, layers=attention)


def attention(model) -> list:
    scale = model.config.attention_multiplier
    return [(layer.self_attn, lambda hidden, a=layer.self_attn: reference.attention(
                a, hidden, model.config, "o_proj", rotary=model.config.position_embedding_type == "rope", scale=scale))
            for layer in model.model.layers if getattr(layer, "self_attn", None) is not None]


def _moe_weights(moe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(router [experts, hidden], gate_up [experts, 2 x inner, hidden], down [experts, hidden, inner]) in either
    layout transformers has stored them in."""
    if hasattr(moe, "experts"):  # 5.20 on
        return moe.router.weight, moe.experts.gate_up_proj, moe.experts.down_proj
    return moe.router.layer.weight, moe.input_linear.weight, moe.output_linear.weight  # 4.52 ... 5.19


def experts(model) -> list:
    top_k = model.config.num_experts_per_tok
    return [(layer.block_sparse_moe,
             lambda hidden, m=layer.block_sparse_moe: reference.top_k_moe(hidden, *_moe_weights(m), top_k))
            for layer in model.model.layers if getattr(layer, "block_sparse_moe", None) is not None]


def shared_mlps(model) -> list:
    return [(layer.shared_mlp, lambda hidden, m=layer.shared_mlp: reference.fused_swiglu(
                hidden, m.input_linear, m.output_linear)) for layer in model.model.layers]


def portable(config: dict) -> None:
    """Layer kinds under the names every release from 4.52 reads."""
    if isinstance(config.get("layer_types"), list):
        config["layer_types"] = [LEGACY_LAYER_NAMES.get(k, k) for k in config["layer_types"]]


# Its Mamba-2 mixer is Bamba's, copied (transformers' "Copied from"), and went wrong and right with it: each range
# below is Bamba's, seen again on this architecture by running the quick tier on every minor from 4.52.4 to 5.25.0.
KNOWN = (
    Known(
        'granite_h-grouped-norm',
        ('test_layer_matches_float64_reference[layer_kind=mamba2]',),
        '<5.23',
        "transformers < 5.23 (every minor from 4.52.4 to 5.22.2 wrong, 5.23.0 right): the Mamba-2 mixer's gated "
        "RMSNorm runs over all groups at once (mamba_n_groups > 1; relative error 0.15 on the tiny model), Bamba's "
        "and Mamba-2's bug: huggingface/transformers#40861",
        _grouped,
    ),
    Known(
        'granite_h-padded-batch-of-one',
        ('test_padded_batch_of_one_equals_unpadded',),
        '<5.15',
        "transformers < 5.15 (wrong on 4.52.4 ... 5.14.1, right from 5.15.1): the mixer zeroes padded positions only "
        "when the batch has more than one row, so a padded batch of one reads its pads (first-step logits 5.5e-4 "
        "off): huggingface/transformers#46773",
    ),
    Known(
        'chunked-prefill-granite_h',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '<5.13',
        "transformers < 5.13 (wrong on 4.52.4 ... 5.12.1, right from 5.13.1): a multi-token input with a cache "
        "started from a zero conv context and state (logits 17 % off): huggingface/transformers#46741",
    ),
    Known(
        'granite_h-cache-4.54',
        HYBRID_CACHE_CHECKS,
        '>=4.54,<4.55',
        "transformers 4.54 (wrong on 4.54.1, right on 4.53.3 and 4.55.4): the hybrid cache, a Cache subclass in 4.54 "
        "reverted in 4.55, breaks cached decoding (each decode step's logits 58 % off the full forward pass), as "
        "Bamba's; repro: generate() with and without use_cache",
    ),
)


_TINY_PATTERN = ["mamba", "attention", "mamba", "attention", "mamba"]

ARCH = Arch(
    key="granite_h",
    family="hybrid",
    model_type="granitemoehybrid",
    hub_id="ibm-granite/granite-4.0-h-tiny",
    # Granite 4.0-H-Tiny's configuration (docs/research/hybrid-configs.md): builds 6,939,037,248 parameters on the
    # meta device (transformers 5.25.0), the safetensors total.
    synthetic_config=dict(
        vocab_size=100352, hidden_size=1536, num_hidden_layers=40,
        layer_types=["attention" if i in (5, 15, 25, 35) else "mamba" for i in range(40)],
        num_attention_heads=12, num_key_value_heads=4, num_local_experts=64, num_experts_per_tok=6,
        intermediate_size=512, shared_intermediate_size=1024, mamba_n_heads=48, mamba_d_head=64, mamba_n_groups=1,
        mamba_d_state=128, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=256, mamba_conv_bias=True,
        mamba_proj_bias=False, position_embedding_type="nope", embedding_multiplier=12.0, logits_scaling=6.0,
        residual_multiplier=0.22, attention_multiplier=0.0078125, rms_norm_eps=1e-5, tie_word_embeddings=True,
        max_position_embeddings=131072, hidden_act="silu",
    ),
    published_params=6.94e9,  # "7B" total; 6,939,037,248 in the safetensors, and the configuration above builds
    published_digits=3,       # exactly that
    # Mamba at 0, 2, 4 and attention at 1, 3 (each kind's first and last layer apart; MoE and shared MLP in every
    # layer); 4 experts of 32, 2 a token (with experts of 64 the checkpoint was 1.8 MB of the fixtures' 12); n_groups
    # 2 and a chunk of 8; the multipliers as the real model's (the attention one as 1/head_dim, not
    # 1/sqrt(head_dim), so a reference that drops it fails) but the logits divisor: at 6 the tiny model was still
    # degenerate after make-tiny's 600 steps (loss 3.5), at 1 it passes in 550 (32 s).
    tiny_config=dict(hidden_size=64, num_hidden_layers=5, layer_types=list(_TINY_PATTERN), num_attention_heads=4,
                     num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, intermediate_size=32,
                     shared_intermediate_size=32, mamba_n_heads=8, mamba_d_head=16, mamba_n_groups=2,
                     mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8,
                     position_embedding_type="nope", embedding_multiplier=12.0, logits_scaling=1.0,
                     residual_multiplier=0.22, attention_multiplier=0.0625, max_position_embeddings=2048,
                     tie_word_embeddings=True),
    tiny_pad_token=True,  # Granite's tokenizer has a pad token (<|pad|>)
    cache_bytes=cache_bytes,
    layers={"mamba2": Layer(mixers, "float64 sequential SSD recurrence"),
            "attention": Layer(attention, "float64 grouped-query softmax attention, no position encoding, "
                                          "attention_multiplier as the scale"),
            "moe": Layer(experts, "float64 top-k mixture of SwiGLU experts"),
            "shared_mlp": Layer(shared_mlps, "float64 SwiGLU MLP (fused gate and up)")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.granitemoehybrid.modeling_granitemoehybrid", ops=MAMBA2_KERNEL_OPS),
    min_transformers="4.52.0",
    boundaries=('mamba_d_conv', 'mamba_chunk_size'),
    portable=portable,
)
