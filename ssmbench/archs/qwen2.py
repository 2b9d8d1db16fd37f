"""Qwen2: Qwen/Qwen2.5-3B, a grouped-query-attention Transformer of the reference pair's size (16 query heads
share 2 key/value heads: an eighth of phi-2's KV cache per layer and token)."""

from __future__ import annotations

from .. import reference
from .base import Arch, Layer, attention_cache_bytes


def attention(model) -> list:
    """Every layer's grouped-query attention (Llama's layout too: model.layers[i].self_attn, q/k/v/o_proj)."""
    return [(layer.self_attn, lambda hidden, a=layer.self_attn: reference.attention(a, hidden, model.config, "o_proj"))
            for layer in model.model.layers]


ARCH = Arch(
    key="qwen2",
    family="attention",
    model_type="qwen2",
    hub_id="Qwen/Qwen2.5-3B",
    # Qwen2.5-3B's config.json (values as published; no pad id: generate() pads with eos)
    synthetic_config=dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
        num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
        rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=True, use_sliding_window=False,
        sliding_window=32768, max_window_layers=36, bos_token_id=151643, eos_token_id=151643,
    ),
    published_params=3.09e9,  # "3.09B" (the configuration above builds 3,085,938,688)
    published_digits=3,
    tiny_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0, hidden_act="silu",
                     tie_word_embeddings=True, use_sliding_window=False),
    tiny_pad_token=True,  # Qwen2.5's tokenizer has one (<|endoftext|>)
    cache_bytes=attention_cache_bytes,
    layers={"attention": Layer(attention, "float64 grouped-query softmax attention")},
)
