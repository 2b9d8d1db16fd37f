"""FalconMamba: tiiuae/falcon-mamba-7b, Mamba-1 with weightless RMS normalisation of dt, B and C in every mixer."""

from __future__ import annotations

from .. import reference
from .base import Arch, Kernels
from .mamba import MAMBA1_GLOBAL_OPS, MAMBA1_KERNEL_OPS, cache_bytes


def layer_reference(model, index: int):
    mixer = model.backbone.layers[index].mixer
    eps = getattr(model.config, "mixer_rms_eps", 1e-6)
    return mixer, lambda hidden: reference.mamba_mixer(mixer, hidden, bcdt_rms_eps=eps)


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
    layer_reference=layer_reference,
    reference_name="float64 sequential scan with dt/B/C RMS normalisation",
    kernels=Kernels(module="transformers.models.falcon_mamba.modeling_falcon_mamba", ops=MAMBA1_KERNEL_OPS,
                    global_ops=MAMBA1_GLOBAL_OPS, global_extra=(("falcon_mamba_inner_fn", "mamba_inner_fn"),)),
)
