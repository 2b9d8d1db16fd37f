"""Llama: meta-llama/Llama-3.2-3B, a grouped-query-attention Transformer of the reference pair's size (24 query
heads share 8 key/value heads) with Llama 3's rotary frequency scaling. The seventh architecture, added as the
guide shows (docs/adding.md): this module and its tiny checkpoint."""

from __future__ import annotations

from .base import Arch, Layer, attention_cache_bytes
from .qwen2 import attention  # the same layout: model.layers[i].self_attn with q/k/v/o_proj

# Llama 3's long-context rotary scaling, as the 3.2 models publish it (transformers' rope_type "llama3")
LLAMA3_ROPE = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192)


ARCH = Arch(
    key="llama",
    family="attention",
    model_type="llama",
    hub_id="meta-llama/Llama-3.2-3B",
    # Llama-3.2-3B's config.json (values as published; no pad id: generate() pads with eos)
    synthetic_config=dict(
        vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
        rope_theta=500000.0, rope_scaling=dict(LLAMA3_ROPE), rms_norm_eps=1e-5, hidden_act="silu",
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False, bos_token_id=128000, eos_token_id=128001,
    ),
    published_params=3.21e9,  # "3.21B" (Meta's model card; tied embeddings counted once)
    published_digits=3,
    # Tiny, with the same rotary scaling shrunk to its context (so the float64 reference checks the scaling)
    tiny_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0, hidden_act="silu",
                     tie_word_embeddings=True,
                     rope_scaling=dict(LLAMA3_ROPE, factor=8.0, original_max_position_embeddings=16)),
    tiny_pad_token=False,  # Llama 3's tokenizer has none
    cache_bytes=attention_cache_bytes,
    layers={"attention": Layer(attention, "float64 grouped-query softmax attention, Llama 3 rotary scaling")},
    boundaries=('rope_scaling.original_max_position_embeddings', 'rope_parameters.original_max_position_embeddings'),
)
