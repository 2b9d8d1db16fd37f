"""Bamba: ibm-fms/Bamba-9B, a hybrid -- Mamba-2 mixers in every layer but three grouped-query attention layers
(9, 18, 27 of 32; partial rotary 0.5). Chosen among the hybrids transformers implements (Bamba, Zamba2,
FalconH1, GraniteMoeHybrid, Jamba, NemotronH; all generate with and without a cache on CPU in 5.24) as the
plainest: dense, the Mamba-2 mixer as is, Llama-style attention, no dt-limit inconsistency between its prefill
and decode paths (Zamba2 and NemotronH clamp dt only in prefill). transformers has it from 4.48.0."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Kernels, Known, Layer, attention_cache_bytes, mamba2_layer_bytes
from .mamba2 import MAMBA2_KERNEL_OPS


def _attention_layers(config) -> list[int]:
    return list(config.attn_layer_indices or [])


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Mamba-2 state for each Mamba layer (conv channels ``expand x hidden + 2 x groups x state``, model dtype;
    a [head_dim x state] SSM state per head, float32 on 5.x) plus K and V per token for each attention layer."""
    attention = len(_attention_layers(config))
    mamba_layers = (config.num_hidden_layers - attention) * mamba2_layer_bytes(
        config.mamba_n_heads, config.mamba_d_head, config.mamba_n_groups, config.mamba_d_state, config.mamba_d_conv,
        dtype)
    return batch * mamba_layers + attention_cache_bytes(config, context, dtype, batch, layers=attention)


def mixers(model) -> list:
    """Every layer's Mamba-2 mixer (Granite 4.0-H's layers, a copy, hold ``mamba = None`` where they attend)."""
    return [(layer.mamba, lambda hidden, m=layer.mamba: reference.mamba2_mixer(m, hidden))
            for layer in model.model.layers if getattr(layer, "mamba", None) is not None]


def attention(model) -> list:
    return [(layer.self_attn, lambda hidden, a=layer.self_attn: reference.attention(a, hidden, model.config, "o_proj"))
            for layer in model.model.layers if hasattr(layer, "self_attn")]


def _grouped(config) -> bool:
    return getattr(config, "mamba_n_groups", 1) > 1


# what a broken hybrid cache breaks (4.54's, Bamba's and its copies')
HYBRID_CACHE_CHECKS = (
    'test_cached_greedy_equals_uncached',
    'test_step_decode_logits_match_full_forward',
    'test_beam_search_with_cache_equals_without',
    'test_padded_batch_of_one_equals_unpadded',
    'test_greedy_generations_are_not_degenerate',
    'test_scores_and_logits_of_a_cached_run_equal_an_uncached_runs',
    'test_decode_on_both_sides_of_every_block_boundary',
    'test_seeded_sampling_is_the_same_with_and_without_the_cache',
)

KNOWN = (
    Known(
        'bamba-grouped-norm',
        ('test_layer_matches_float64_reference[layer_kind=mamba2]',),
        '<5.23',
        "transformers < 5.23 (the all-minors sweep: wrong on 4.52.4 ... 5.22.2, right from 5.23.0): Bamba's Mamba-2 "
        "mixer has Mamba-2's gated RMSNorm over all groups at once (mamba_n_groups > 1): "
        'huggingface/transformers#40861',
        _grouped,
    ),
    Known(
        'bamba-cached-decode',
        (
            'test_step_decode_logits_match_full_forward',
            'test_scores_and_logits_of_a_cached_run_equal_an_uncached_runs',
            'test_decode_on_both_sides_of_every_block_boundary',
        ),
        '<4.52',
        "transformers < 4.52 (wrong on 4.48.3 and 4.51.3; right on 4.52.4 and every later release run): Bamba's "
        'cached decode steps drift from the full forward pass (relative error 0.1 on the tiny model); no upstream '
        'issue found',
    ),
    Known(
        'bamba-partial-rotary',
        ('test_layer_matches_float64_reference[layer_kind=attention]',),
        '>=5.0,<5.15',
        'transformers 5.0 ... 5.14 (the all-minors sweep: wrong on 5.0.0 ... 5.14.1; right on 4.57.6 and from '
        "5.15.1): Bamba's rotary embedding ignores partial_rotary_factor (RoPE over the whole head, not half of it), "
        'dropped in the 5.x RoPE refactor and restored by huggingface/transformers#46912',
    ),
    Known(
        'bamba-beam-search',
        ('test_beam_search_with_cache_equals_without',),
        '<4.52',
        "transformers < 4.52 (wrong on 4.48.3 and 4.51.3; right on 4.52.4 and later): Bamba's beam search with the "
        'cache diverges from beam search recomputed without it after a few tokens; no upstream issue found',
    ),
    Known(
        'bamba-padded-batch-of-one',
        ('test_padded_batch_of_one_equals_unpadded',),
        '<5.15',
        "transformers < 5.15 (the all-minors sweep: wrong on 4.48.3 ... 5.14.1, right from 5.15.1): Bamba's Mamba-2 "
        "mixer, a copy of Mamba-2's, zeroes padded positions only when the batch has more than one row, so a padded "
        'batch of one reads its pads (first-step logits 0.5 % off behind masked pads of other content): '
        'huggingface/transformers#46773',
    ),
    Known(
        'bamba-cache-4.54',
        HYBRID_CACHE_CHECKS,
        '>=4.54,<4.55',
        "transformers 4.54 (the all-minors sweep: wrong on 4.54.1, right on 4.53.3 and 4.55.4): Bamba's hybrid cache,"
        " made a Cache subclass in 4.54 and reverted in 4.55, breaks cached decoding -- each decode step's logits 52 "
        "% off the full forward pass, so cached greedy, beam search with the cache and the tiny model's generations "
        '(18 distinct tokens over 4 prompts) go wrong; repro: generate() with and without use_cache on any Bamba',
    ),
    Known(
        'chunked-prefill-bamba',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '<5.13',
        "transformers < 5.13 (wrong on every release run from 4.48.3 to 5.12.1; right on 5.13.1 and later): Bamba's "
        'Mamba-2 mixer started a multi-token input with a cache from a zero conv context and state: fixed by '
        'huggingface/transformers#46741',
    ),
)


ARCH = Arch(
    key="bamba",
    family="hybrid",
    model_type="bamba",
    hub_id="ibm-fms/Bamba-9B",
    # Bamba-9B's configuration as transformers' conversion script (bamba/convert_mamba_ssm_checkpoint.py) writes
    # it from the mamba_ssm one; rope_theta, max_position_embeddings and the special ids were not found
    # published: transformers' defaults are used (timing and memory do not depend on them).
    synthetic_config=dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        attn_layer_indices=[9, 18, 27], num_attention_heads=32, num_key_value_heads=8, mamba_n_heads=128,
        mamba_d_head=64, mamba_n_groups=1, mamba_d_state=128, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=256,
        mamba_conv_bias=True, mamba_proj_bias=False, rms_norm_eps=1e-5, tie_word_embeddings=False,
    ),
    published_params=9.78e9,  # "9.78B"; the configuration above builds 9,780,235,392
    published_digits=3,
    # Three layers, the last one attention: the float64 check covers each kind (a Mamba-2 mixer, the
    # grouped-query attention); n_groups 2, where transformers' Mamba-2 code has gone wrong before.
    tiny_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, attn_layer_indices=[2],
                     num_attention_heads=4, num_key_value_heads=2, mamba_n_heads=8, mamba_d_head=16,
                     mamba_n_groups=2, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8,
                     max_position_embeddings=2048, tie_word_embeddings=False),
    tiny_pad_token=True,
    cache_bytes=cache_bytes,
    layers={"mamba2": Layer(mixers, "float64 sequential SSD recurrence"),
            "attention": Layer(attention, "float64 grouped-query softmax attention, partial rotary")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.bamba.modeling_bamba", ops=MAMBA2_KERNEL_OPS),
    min_transformers="4.48.0",
    boundaries=('mamba_d_conv', 'mamba_chunk_size'),
)
