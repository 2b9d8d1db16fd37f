"""Phi: microsoft/phi-2, the reference pair's Transformer (multi-head attention, partial rotary)."""

from __future__ import annotations

from .. import reference
from .base import Arch, Layer, attention_cache_bytes


def attention(model) -> list:
    return [(layer.self_attn, lambda hidden, a=layer.self_attn: reference.phi_attention(a, hidden, model.config))
            for layer in model.model.layers]


ARCH = Arch(
    key="phi",
    family="attention",
    model_type="phi",
    hub_id="microsoft/phi-2",
    synthetic_config=dict(
        vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, partial_rotary_factor=0.4, rope_theta=10000.0,
        max_position_embeddings=2048, hidden_act="gelu_new", layer_norm_eps=1e-5,
        tie_word_embeddings=False, qk_layernorm=False, bos_token_id=50256, eos_token_id=50256,
    ),
    published_params=2.780e9,
    published_digits=4,
    tiny_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, partial_rotary_factor=0.5, rope_theta=10000.0,
                     max_position_embeddings=2048, hidden_act="gelu_new", tie_word_embeddings=False),
    tiny_pad_token=False,  # phi-2's tokenizer has none
    cache_bytes=attention_cache_bytes,
    layers={"attention": Layer(attention, "float64 softmax attention, partial rotary")},
)
