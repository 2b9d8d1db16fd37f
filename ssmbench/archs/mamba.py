"""Mamba (v1): state-spaces/mamba-2.8b-hf, the reference pair's SSM."""

from __future__ import annotations

import torch

from .. import reference
from ..native import NativeMap
from .base import Arch, Kernels, Known, Layer, ssm_layer_bytes

# The wrappers transformers' Mamba-1 modeling modules call (mamba, falcon_mamba), by operation.
MAMBA1_KERNEL_OPS = {"selective_scan": "mamba_selective_scan", "selective_state_update": "mamba_selective_state_update",
                     "causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update"}
# Seen 4.56.2 ... 5.14.1: the module-level kernel functions (None when absent) the forward checks instead.
MAMBA1_GLOBAL_OPS = {"selective_scan": "selective_scan_fn", "selective_state_update": "selective_state_update",
                     "causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update"}


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """``layers x intermediate x (state_size + conv_kernel)`` values per sequence whatever the context; the SSM
    state in float32 on transformers 5.x (see compat)."""
    inner = config.intermediate_size
    return batch * config.num_hidden_layers * ssm_layer_bytes(inner, config.conv_kernel, inner * config.state_size,
                                                              dtype)


def native_config(config) -> dict:
    """mamba-ssm's ``MambaConfig`` for a transformers ``MambaConfig`` (the mapping of transformers' conversion
    script, ``convert_mamba_ssm_checkpoint_to_pytorch.py``, read the other way): no MLP, RMSNorm with the fused
    add-norm, the residual in float32 as configured, no vocabulary padding (the weights have their shape).
    What mamba-ssm's config cannot say (its norms' epsilon is fixed at 1e-5, its inner width is expand x d_model)
    is refused, not approximated."""
    if (config.layer_norm_epsilon != 1e-5 or config.intermediate_size != config.expand * config.hidden_size
            or config.hidden_act != "silu"):
        raise ValueError(f"mamba-ssm's MambaConfig fixes the norms' epsilon at 1e-5, the inner width at expand x "
                         f"hidden_size and the activation at silu; this model has {config.layer_norm_epsilon:g}, "
                         f"{config.intermediate_size} (expand {config.expand} x {config.hidden_size}) and "
                         f"{config.hidden_act}")
    return dict(d_model=config.hidden_size, n_layer=config.num_hidden_layers, vocab_size=config.vocab_size,
                d_intermediate=0, rms_norm=True, residual_in_fp32=config.residual_in_fp32, fused_add_norm=True,
                pad_vocab_size_multiple=1, tie_embeddings=config.tie_word_embeddings,
                ssm_cfg=dict(layer="Mamba1", d_state=config.state_size, d_conv=config.conv_kernel,
                             expand=config.expand, dt_rank=config.time_step_rank, conv_bias=config.use_conv_bias,
                             bias=config.use_bias))


def mixers(model, **reference_kwargs) -> list:
    """Every Mamba-1 mixer with its float64 sequential scan (FalconMamba's adds its dt/B/C normalisation)."""
    return [(layer.mixer, lambda hidden, m=layer.mixer: reference.mamba_mixer(m, hidden, **reference_kwargs))
            for layer in model.backbone.layers]


KNOWN = (
    Known(
        'mamba-decode-after-1-token-prompt',
        ('test_step_decode_logits_match_full_forward[prefill=1]',),
        '<5.4',
        "transformers < 5.4 (seen here on 4.46.3, 4.52.4 and 5.0.0; fine on 5.17.0 and 5.24.0; issue #16's run of 28 "
        "releases: wrong on 4.46.0 ... 5.3.0, rewritten in 5.4.0): Mamba's (and FalconMamba's, the same mixer) cached"
        " decode after a 1-token prompt diverges from the full forward pass (the conv state's clamped cache_position "
        'writes the new token into the wrong slot); no upstream issue found',
    ),
    Known(
        'mamba-a-log-dtype',
        ('test_requested_dtype_is_loaded',),
        '<5.3',
        "transformers < 5.3 (seen here on 4.46.3, 4.52.4 and 5.0.0; fine on 5.17.0 and 5.24.0; issue #16's run: 4.46 "
        "... 5.2): Mamba's and FalconMamba's A_log stays float32 when from_pretrained is asked for bfloat16 or "
        'float16, deliberately (mamba_ssm keeps it so)',
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
        'right-padded-prefill-cache',
        ('test_right_padded_prefill_leaves_each_rows_state',),
        '',
        'every release, 4.46.3 ... 5.25.0 (the all-minors sweep): a right-padded prefill leaves a Mamba-family cache '
        'as if the pad tokens had been read (zero conv state, decayed SSM state): huggingface/transformers#48256, '
        'open',
    ),
    Known(
        'chunked-prefill-mamba1',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '',
        "every release, 4.46.3 ... 5.25.0 (the all-minors sweep): Mamba's (and FalconMamba's) mixer runs a "
        'multi-token input through a cache as a fresh prefill, ignoring the cached conv and SSM state (5.0.0: raises '
        "IndexError instead); no upstream issue found (Mamba-2's was huggingface/transformers#46032)",
    ),
    Known(
        'continue-wrong-mamba',
        ('test_generation_continues_from_returned_cache',),
        '>=5.0,<5.25',
        '5.0 ... 5.24 (every 5.x release run from 5.0.0 to 5.24.0; right on 5.25.0): generate() handed the cache it '
        'returned for Mamba continues differently from one call -- on 5.24.0 a zeroed copy of the cache gives exactly'
        ' the no-cache result, the real one 0.5 % off: the whole sequence is fed again on top of the cached state '
        '(tokens wrong too on 5.0.0 and 5.2.0); no upstream issue found',
    ),
    Known(
        'continue-raises-5.4',
        ('test_a_returned_cache_is_used_when_continuing',),
        '>=5.4,<5.5',
        'transformers 5.4 (the all-minors sweep: 5.4.0 only; fine on 5.3.0 and 5.5.4, and for Mamba-2 on 5.4.0): '
        'generate() continuing from a Mamba-1 cache it returned raises in the conv state\'s update ("The expanded '
        'size of the tensor (1) must match the existing size (30) at non-singleton dimension 2"); no upstream issue '
        'found',
    ),
)


ARCH = Arch(
    key="mamba",
    family="ssm",
    model_type="mamba",
    hub_id="state-spaces/mamba-2.8b-hf",
    synthetic_config=dict(
        vocab_size=50280, hidden_size=2560, num_hidden_layers=64, state_size=16, expand=2,
        intermediate_size=5120, conv_kernel=4, time_step_rank=160, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    ),
    published_params=2.768e9,
    published_digits=4,
    tiny_config=dict(hidden_size=64, num_hidden_layers=4, state_size=16, expand=2, intermediate_size=128,
                     conv_kernel=4, time_step_rank=8, use_bias=False, use_conv_bias=True, tie_word_embeddings=True),
    tiny_pad_token=True,  # like the real GPT-NeoX tokenizer
    cache_bytes=cache_bytes,
    layers={"mamba1": Layer(mixers, "float64 sequential scan")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.mamba.modeling_mamba", ops=MAMBA1_KERNEL_OPS,
                    global_ops=MAMBA1_GLOBAL_OPS, global_extra=(("mamba_inner_fn",),)),
    suite_graph=True,
    native=NativeMap(native_config, renames=(("backbone.embeddings.", "backbone.embedding."),)),
    boundaries=('conv_kernel',),
)
