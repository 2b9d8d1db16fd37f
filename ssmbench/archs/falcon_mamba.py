"""FalconMamba: tiiuae/falcon-mamba-7b, Mamba-1 with weightless RMS normalisation of dt, B and C in every mixer."""

from __future__ import annotations

from .base import Arch, Kernels, Known, Layer
from .mamba import MAMBA1_GLOBAL_OPS, MAMBA1_KERNEL_OPS, cache_bytes, mixers


def falcon_mixers(model) -> list:
    return mixers(model, bcdt_rms_eps=getattr(model.config, "mixer_rms_eps", 1e-6))


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
        'continue-raises-5.4',
        ('test_a_returned_cache_is_used_when_continuing',),
        '>=5.4,<5.5',
        'transformers 5.4 (the all-minors sweep: 5.4.0 only; fine on 5.3.0 and 5.5.4, and for Mamba-2 on 5.4.0): '
        'generate() continuing from a Mamba-1 cache it returned raises in the conv state\'s update ("The expanded '
        'size of the tensor (1) must match the existing size (30) at non-singleton dimension 2"); no upstream issue '
        'found',
    ),
    Known(
        'continue-wrong-falcon_mamba',
        ('test_generation_continues_from_returned_cache',),
        '>=5.0,<5.25',
        '5.0 ... 5.24 (every 5.x release run from 5.0.0 to 5.24.0; right on 5.25.0): generate() handed the cache it '
        'returned for FalconMamba continues differently from one call (tokens wrong on 5.0.0 ... 5.14.1, first logits'
        ' 2 % off later); no upstream issue found',
    ),
)


ARCH = Arch(
    key="falcon_mamba",
    family="ssm",
    model_type="falcon_mamba",
    hub_id="tiiuae/falcon-mamba-7b",
    # falcon-mamba-7b's config.json; its expand (16) does not give its intermediate_size, which is explicit
    synthetic_config=dict(
        vocab_size=65024, hidden_size=4096, num_hidden_layers=64, state_size=16, expand=16,
        intermediate_size=8192, conv_kernel=4, time_step_rank=256, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=False, mixer_rms_eps=1e-6,
        bos_token_id=0, eos_token_id=11, pad_token_id=11,
    ),
    published_params=7e9,  # "7B" (the configuration above builds 7,272,665,088)
    published_digits=1,
    tiny_config=dict(hidden_size=64, num_hidden_layers=4, state_size=16, expand=2, intermediate_size=128,
                     conv_kernel=4, time_step_rank=8, use_bias=False, use_conv_bias=True, tie_word_embeddings=False,
                     mixer_rms_eps=1e-6),
    tiny_pad_token=True,
    cache_bytes=cache_bytes,
    layers={"mamba1": Layer(falcon_mixers, "float64 sequential scan with dt/B/C RMS normalisation")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.falcon_mamba.modeling_falcon_mamba", ops=MAMBA1_KERNEL_OPS,
                    global_ops=MAMBA1_GLOBAL_OPS, global_extra=(("falcon_mamba_inner_fn", "mamba_inner_fn"),)),
    boundaries=('conv_kernel',),
)
