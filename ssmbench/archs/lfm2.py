"""LFM2: LiquidAI/LFM2-2.6B, a hybrid of gated short convolutions (22 of 30 layers) and grouped-query attention with
a per-head RMS norm on queries and keys (layers 2, 5, 9, 13, 17, 21, 24, 27), each layer followed by a SwiGLU MLP.
Its recurrent state is tiny: a convolution layer keeps only the last 3 positions of its input (conv_L_cache), so
its cache grows with the context only through the eight attention layers. transformers has lfm2 from 4.54.0.

Layer kinds, each against its float64 reference: the short convolution (B * x through a causal depthwise
convolution, gated by C), the attention (rotary, QK norm) and the MLP."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Known, Layer, attention_cache_bytes


def _attention_layers(config) -> int:
    return sum(kind != "conv" for kind in config.layer_types)


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """The last ``conv_L_cache`` inputs of each convolution layer (hidden channels, model dtype) plus K and V per
    token for each attention layer."""
    elem = torch.empty((), dtype=dtype).element_size()
    attention = _attention_layers(config)
    conv = (config.num_hidden_layers - attention) * config.hidden_size * config.conv_L_cache * elem
    return batch * conv + attention_cache_bytes(config, context, dtype, batch, layers=attention)


def convs(model) -> list:
    return [(layer.conv, lambda hidden, c=layer.conv: reference.short_conv(c, hidden))
            for layer in model.model.layers if getattr(layer, "conv", None) is not None]


def attention(model) -> list:
    return [(layer.self_attn, lambda hidden, a=layer.self_attn: reference.attention(
                a, hidden, model.config, "out_proj", qk_norm=(a.q_layernorm, a.k_layernorm)))
            for layer in model.model.layers if getattr(layer, "self_attn", None) is not None]


def mlps(model) -> list:
    return [(layer.feed_forward, lambda hidden, m=layer.feed_forward: reference.gated_mlp(hidden, m.w1, m.w3, m.w2))
            for layer in model.model.layers]


# Every minor from 4.54.1 to 5.25.0 run (the quick tier, --ssm-archs lfm2); each range's boundary seen on both sides.
KNOWN = (
    Known(
        'lfm2-beam-reorder',
        (
            'test_beam_search_with_cache_equals_without',
            'test_max_new_tokens_and_max_length_are_exact[mode=beams,use_cache=True]',
            'test_beams_end_at_eos_and_never_run_past_max_new_tokens',
        ),
        '<5.0',
        "transformers 4.54 ... 4.57 (raises on 4.54.1, 4.55.4, 4.56.2 and 4.57.6; right on 5.0.0): beam search with "
        "the cache raises IndexError -- Lfm2HybridConvCache.reorder_cache index_selects every layer's key and value "
        "cache, and a convolution layer's are empty placeholders; no upstream issue found",
    ),
    Known(
        'lfm2-short-prompt-conv-state',
        ('test_step_decode_logits_match_full_forward[prefill=1]',),
        '<5.4',
        "transformers < 5.4 (wrong on 4.54.1 ... 5.3.0, right from 5.4.0): after a prompt shorter than the "
        "convolution window (1 token, conv_L_cache 3) a decode step writes its input at its clamped cache position "
        "instead of the window's end, so the next steps read a wrong conv state (logits 11 % off); 5.4 rewrote "
        "the update (roll, then write the last column); no upstream issue found",
    ),
    Known(
        'lfm2-conv-state-per-layer',
        ('test_cache_bytes_match_formula', 'test_the_cache_has_the_formulas_size_after_every_step'),
        '<5.5',
        "transformers < 5.5 (4.54.1 ... 5.4.0; 5.5.4 holds exactly the formula): Lfm2HybridConvCache allocates a "
        "convolution state for every layer, the attention layers too -- hidden x conv_L_cache values each that "
        "nothing reads (the tiny model: 1536 bytes a sequence over the formula; LFM2-2.6B: 96 KiB); 5.5 moved LFM2 "
        "to the shared hybrid cache, which keeps one per convolution layer; no upstream issue found",
    ),
    Known(
        'lfm2-padded-batch-of-one',
        ('test_padded_batch_of_one_equals_unpadded',),
        '<5.15',
        "transformers < 5.15 (wrong on 4.54.1 ... 5.14.1, right from 5.15.1): the short convolution zeroes padded "
        "positions only when the batch has more than one row (apply_mask_to_padding_states' batch > 1 test, as "
        "Mamba-2's and Bamba's before huggingface/transformers#46773), so a padded batch of one convolves its pads "
        "(first-step logits 0.56 % off)",
    ),
    Known(
        'chunked-prefill-lfm2',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '<5.15',
        "transformers < 5.15 (wrong on 4.54.1 ... 5.14.1, right from 5.15.1): once the cache holds a state, the "
        "short convolution takes any input as one decode step (it convolves only the window ending at the last "
        "token), so a prompt prefilled in two chunks goes wrong from the second chunk (logits 48-58 % off); no "
        "upstream issue found",
    ),
)


_ATTENTION = (2, 5, 9, 13, 17, 21, 24, 27)

ARCH = Arch(
    key="lfm2",
    family="hybrid",
    model_type="lfm2",
    hub_id="LiquidAI/LFM2-2.6B",
    # LFM2-2.6B's configuration (docs/research/hybrid-configs.md): builds 2,569,272,320 parameters on the meta
    # device (transformers 5.25.0), the model card's count; block_auto_adjust_ff_dim false keeps the MLP at 10752.
    synthetic_config=dict(
        vocab_size=65536, hidden_size=2048, intermediate_size=10752, num_hidden_layers=30,
        layer_types=["full_attention" if i in _ATTENTION else "conv" for i in range(30)],
        num_attention_heads=32, num_key_value_heads=8, conv_L_cache=3, conv_bias=False, norm_eps=1e-5,
        rope_theta=1000000.0, max_position_embeddings=128000, tie_word_embeddings=True, block_multiple_of=256,
        block_ffn_dim_multiplier=1.0, block_auto_adjust_ff_dim=False,
    ),
    published_params=2.57e9,  # "2.6B"; 2,569,272,320 on the model card, and the configuration above builds it
    published_digits=3,
    # Convolutions at 0, 2, 4 and attention at 1, 3 (each kind's first and last layer apart; the MLP in every
    # layer); rope_theta 10000 so the rotation turns within the tiny prompts.
    tiny_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=5,
                     layer_types=["conv", "full_attention", "conv", "full_attention", "conv"],
                     num_attention_heads=4, num_key_value_heads=2, conv_L_cache=3, conv_bias=False,
                     rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=True,
                     block_auto_adjust_ff_dim=False),
    tiny_pad_token=True,  # LFM2's tokenizer has a pad token (<|pad|>)
    cache_bytes=cache_bytes,
    layers={"short_conv": Layer(convs, "float64 gated causal depthwise convolution"),
            "attention": Layer(attention, "float64 grouped-query softmax attention, rotary, per-head QK RMS norm"),
            "mlp": Layer(mlps, "float64 SwiGLU MLP")},
    known=KNOWN,
    min_transformers="4.54.0",
    boundaries=('conv_L_cache',),
)
