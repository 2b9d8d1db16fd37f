"""Llama 3.1 8B: meta-llama/Llama-3.1-8B, the grouped-query-attention Transformer of the 8-10B hybrids' size
(Bamba-9B, Nemotron-H-8B, Granite 4.0-H-Tiny), which the summary pairs them with by size. 32 query heads share 8
key/value heads; Llama 3.1's rotary scaling (factor 8); untied embeddings. Its tiny model differs from Llama 3.2's
where the two differ: untied embeddings and four query heads to a key/value head (8 and 2 of head size 8)."""

from __future__ import annotations

from .base import Arch, Layer, attention_cache_bytes
from .llama import LLAMA3_ROPE
from .qwen2 import attention  # the same layout: model.layers[i].self_attn with q/k/v/o_proj

ARCH = Arch(
    key="llama8b",
    family="attention",
    model_type="llama",
    hub_id="meta-llama/Llama-3.1-8B",
    # Llama-3.1-8B's config.json (values as published; no pad id: generate() pads with eos)
    synthetic_config=dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
        rope_theta=500000.0, rope_scaling=dict(LLAMA3_ROPE, factor=8.0), rms_norm_eps=1e-5, hidden_act="silu",
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, bos_token_id=128000, eos_token_id=128001,
    ),
    published_params=8.03e9,  # "8.03B" (Meta's model card); the configuration above builds 8,030,261,248
    published_digits=3,       # (meta device, transformers 5.25.0)
    tiny_config=dict(hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=8,
                     num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0, hidden_act="silu",
                     tie_word_embeddings=False,
                     rope_scaling=dict(LLAMA3_ROPE, factor=8.0, original_max_position_embeddings=16)),
    tiny_pad_token=False,  # Llama 3's tokenizer has none
    cache_bytes=attention_cache_bytes,
    layers={"attention": Layer(attention, "float64 grouped-query softmax attention, Llama 3 rotary scaling")},
    boundaries=('rope_scaling.original_max_position_embeddings', 'rope_parameters.original_max_position_embeddings'),
)
