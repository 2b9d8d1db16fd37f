"""Mamba-2: state-spaces/mamba2-2.7b (SSD: scalar decay per head, a [head_dim x 128] state per head).

The tiny checkpoint has n_groups 2 (mamba2-2.7b has 1; Mamba-Codestral 8): transformers' grouped paths are
where its Mamba-2 was wrong for releases (``KNOWN`` below)."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Kernels, Known, Layer, mamba2_layer_bytes


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Per layer and sequence, whatever the context: the conv state over ``expand x hidden + 2 x n_groups x
    state_size`` channels (model dtype) and a [head_dim x state_size] SSM state per head (float32 on 5.x)."""
    return batch * config.num_hidden_layers * mamba2_layer_bytes(
        config.num_heads, config.head_dim, config.n_groups, config.state_size, config.conv_kernel, dtype)


MAMBA2_KERNEL_OPS = {"selective_scan": "mamba2_chunk_scan", "selective_state_update": "mamba2_selective_state_update",
                     "causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update"}


def mixers(model) -> list:
    return [(layer.mixer, lambda hidden, m=layer.mixer: reference.mamba2_mixer(m, hidden))
            for layer in model.backbone.layers]


def _grouped(config) -> bool:
    return getattr(config, "n_groups", 1) > 1


def _tied(config) -> bool:
    return bool(getattr(config, "tie_word_embeddings", False))


KNOWN = (
    Known(
        'mamba2-grouped-ssd',
        (
            'test_step_decode_logits_match_full_forward',
            'test_kernels_match_reference_path',
            'test_layer_matches_float64_reference[layer_kind=mamba2]',
            'test_scores_and_logits_of_a_cached_run_equal_an_uncached_runs',
            'test_decode_on_both_sides_of_every_block_boundary',
        ),
        '<4.52',
        'transformers < 4.52 (wrong on 4.46.3, 4.47.1, 4.48.3 and 4.51.3; right on 4.53.3 and every later release '
        "run): Mamba-2's torch path expands each group's B and C to its heads tiled (.repeat), not group by group, so"
        ' with n_groups > 1 its chunked prefill is wrong: huggingface/transformers#37533',
        _grouped,
    ),
    Known(
        'mamba2-left-padding',
        ('test_left_padded_batch_equals_single',),
        '<4.48',
        'transformers < 4.48 (wrong on 4.46.3 and 4.47.1; right on 4.48.3 and every later release run): a left-padded'
        ' Mamba-2 batch generates differently from each prompt alone; no upstream issue found',
    ),
    Known(
        'mamba2-grouped-norm',
        ('test_layer_matches_float64_reference[layer_kind=mamba2]',),
        '<5.23',
        "transformers < 5.23 (the all-minors sweep: wrong on 4.52.4 ... 5.22.2, right from 5.23.0): Mamba-2's gated "
        'RMSNorm normalises all groups together, not each group as mamba_ssm does (n_groups > 1): '
        'huggingface/transformers#40861',
        _grouped,
    ),
    Known(
        'mamba2-tied-save',
        ('test_save_load_roundtrip_is_exact',),
        '<5.0',
        'transformers < 5.0 (seen on 4.46.3 and 4.52.4; fine on 5.0.0, 5.17.0, 5.24.0; 4.53-4.57 unchecked): '
        'Mamba2ForCausalLM declares no tied weights (_tied_weights_keys = []), so save_pretrained refuses a tied '
        "model's shared embedding and lm_head (mamba2-2.7b is tied); no upstream issue found",
        _tied,
    ),
    Known(
        'mamba2-1-token-prompt',
        ('test_step_decode_logits_match_full_forward[prefill=1]', 'test_cache_bytes_match_formula[context=1]'),
        '<4.48',
        "transformers < 4.48 (raises on 4.46.3 and 4.47.1; fine on 4.48.3 and every later release run): Mamba-2's "
        "forward with use_cache on a 1-token prompt takes the conv state's decode branch and raises IndexError; no "
        'upstream issue found',
    ),
    Known(
        'beam-search-cache-not-reordered',
        ('test_beam_search_with_cache_equals_without',),
        '<5.13',
        'transformers < 5.13 (wrong on every release run from 4.46.3 to 5.12.1; right on 5.13.1 and later): beam '
        "search reordered only a cache named past_key_values, never Mamba's or Mamba-2's, so the beams continued from"
        " other beams' states: huggingface/transformers#46612, fixed by #46819",
    ),
    Known(
        'mamba2-padded-batch-of-one',
        ('test_padded_batch_of_one_equals_unpadded',),
        '<5.15',
        'transformers < 5.15 (the all-minors sweep: wrong on 4.46.3 ... 5.14.1, right from 5.15.1): Mamba-2 zeroes '
        'padded positions only when the batch has more than one row, so a padded batch of one reads its pads '
        '(first-step logits 0.013-0.026 off): huggingface/transformers#46773',
    ),
    Known(
        'right-padded-prefill-cache',
        ('test_right_padded_prefill_leaves_each_rows_state',),
        '',
        'every release, 4.46.3 ... 5.25.0 (the all-minors sweep): a right-padded prefill leaves a Mamba-family cache '
        'as if the pad tokens had been read (zero conv state, decayed SSM state): huggingface/transformers#48256, '
        'open',
    ),
    Known(
        'chunked-prefill-mamba2',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '<5.13',
        "transformers < 5.13 (wrong on every release run from 4.46.3 to 5.12.1; right on 5.13.1 and later): Mamba-2's"
        ' mixer took a multi-token input with a cache as one decode step: huggingface/transformers#46032, fixed by '
        '#46084',
    ),
    Known(
        'continue-wrong-mamba2',
        ('test_generation_continues_from_returned_cache',),
        '>=5.4,<5.25',
        '5.4 ... 5.24 (the all-minors sweep: wrong on 5.4.0 ... 5.24.0; right on 5.25.0): generate() handed the cache'
        ' it returned for Mamba-2 continues differently from one call (first logits 50 % off on 5.4.0, tokens wrong '
        'on 5.5.4 ... 5.12.1, first logits 2 % off later); no upstream issue found',
    ),
    Known(
        'continue-ignores-cache-mamba2',
        ('test_a_returned_cache_is_used_when_continuing',),
        '>=5.0,<5.4',
        '5.0 ... 5.3 (the all-minors sweep: 5.0.0, 5.1.0, 5.2.0 and 5.3.0): generate() handed the cache it returned '
        'for Mamba-2 continues exactly as from a zeroed copy of it -- the cache is not used (the continuation is '
        'right, nothing is saved); no upstream issue found',
    ),
)


ARCH = Arch(
    key="mamba2",
    family="ssm",
    model_type="mamba2",
    hub_id="state-spaces/mamba2-2.7b",
    # mamba2-2.7b's mamba_ssm config (d_model 2560, n_layer 64, vocab 50277 padded to a multiple of 16, tied,
    # rms norm, residual in fp32) in transformers' Mamba2 names, with mamba_ssm's Mamba2 defaults (d_state 128,
    # headdim 64, ngroups 1, d_conv 4, expand 2, chunk 256). Its checkpoint is in mamba_ssm's format: the
    # pretrained source needs a converted copy (transformers' convert_mamba2_ssm_checkpoint_to_pytorch.py).
    synthetic_config=dict(
        vocab_size=50288, hidden_size=2560, num_hidden_layers=64, state_size=128, expand=2, head_dim=64,
        num_heads=80, n_groups=1, conv_kernel=4, chunk_size=256, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=True, time_step_limit=(0.0, float("inf")),
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    ),
    published_params=2.7e9,  # "2.7B" (the configuration above builds 2,702,599,680)
    published_digits=2,
    tiny_config=dict(hidden_size=64, num_hidden_layers=4, state_size=16, expand=2, head_dim=16, num_heads=8,
                     n_groups=2, conv_kernel=4, chunk_size=8, use_bias=False, use_conv_bias=True,
                     tie_word_embeddings=True),
    tiny_pad_token=True,  # GPT-NeoX's tokenizer, as Mamba's
    cache_bytes=cache_bytes,
    layers={"mamba2": Layer(mixers, "float64 sequential SSD recurrence")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.mamba2.modeling_mamba2", ops=MAMBA2_KERNEL_OPS),
    boundaries=('conv_kernel', 'chunk_size'),
)
