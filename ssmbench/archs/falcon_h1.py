"""Falcon-H1: tiiuae/Falcon-H1-3B-Base, a hybrid whose every layer runs grouped-query attention (RoPE) and a Mamba-2
mixer in parallel on the same normed input, scales each by its muP multiplier and adds both to the residual, then
a gated SiLU MLP. muP multipliers sit everywhere: the embedding and the lm_head, the attention's input, keys and
output, the mixer's input, each of its in_proj segments (z, x, B, C, dt) and its output, the MLP's gate and
output. transformers has falcon_h1 from 4.53.0.

Four kinds are checked against float64: the mixer, the attention and the MLP each on its own input and output
(the hooks sit on layer.mamba, layer.self_attn and layer.feed_forward, so the mixer and attention of one layer
are told apart), and the whole model from input_ids to logits, where the multipliers outside those modules
(embedding, lm_head, attention_in/out, ssm_out) and the parallel sum are. Every multiplier is read from the
config, never from the module (the mixer's mup_vector is a non-persistent buffer transformers computes from
ssm_multipliers). Where and how transformers applies them is the same in every release that has the model
(read in 4.53.3, 4.57.6, 5.0.0, 5.4.0, 5.5.4, 5.13.1, 5.15.1, 5.24.0 and 5.25.0), and all four kinds match their
references on every minor release run, 4.53.3 ... 5.25.0 (but 5.4.0, which cannot build the config: ``unrunnable``).

What differs between releases, each a ``Known`` below: batched one-token steps broken by the gated norm before
5.23 (no upstream issue found; docs/repros/falcon_h1-batched-one-token.py), chunked prefill before 5.13 (#46741)
and a padded batch of one before 5.15 (#46773). Its mixer resolves its kernels as Bamba's does on every release
(a fast-path flag before 5.15, then module-level wrappers of the same names); the CUDA kernels were not run."""

from __future__ import annotations

import torch

from .. import reference
from .base import Arch, Kernels, Known, Layer, attention_cache_bytes, mamba2_layer_bytes
from .mamba2 import MAMBA2_KERNEL_OPS


def cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Every layer keeps both: the Mamba-2 state (conv channels ``inner + 2 x groups x state``, model dtype; a
    [head_dim x state] SSM state per head, float32 on 5.x) and K and V per token."""
    mamba = config.num_hidden_layers * mamba2_layer_bytes(
        config.mamba_n_heads, config.mamba_d_head, config.mamba_n_groups, config.mamba_d_state, config.mamba_d_conv,
        dtype)
    return batch * mamba + attention_cache_bytes(config, context, dtype, batch)


def _norm(config) -> str | None:
    """Where the mixer's gated RMS norm sits (mamba_rms_norm false: none, y * silu(z) only)."""
    if not config.mamba_rms_norm:
        return None
    return "before_gate" if config.mamba_norm_before_gate else "after_gate"


def mixer_reference(mixer, hidden, config):
    return reference.mamba2_mixer(mixer, hidden, in_multiplier=config.ssm_in_multiplier,
                                  zxbcdt_multipliers=tuple(config.ssm_multipliers), norm=_norm(config))


def attention_reference(attn, hidden, config):
    return reference.attention(attn, hidden, config, "o_proj", key_multiplier=config.key_multiplier)


def mlp_reference(mlp, hidden, config):
    if config.hidden_act not in ("silu", "swish"):
        raise NotImplementedError(f"Falcon-H1 MLP reference: activation {config.hidden_act!r}")
    gate, down = config.mlp_multipliers
    return reference.gated_mlp(hidden, mlp.gate_proj, mlp.up_proj, mlp.down_proj, gate_multiplier=gate,
                               down_multiplier=down)


def model_reference(model, input_ids):
    """The logits of the whole model in float64, from its weights and config alone: the embedding times
    embedding_multiplier; in each layer the normed input goes to the mixer (its output times ssm_out_multiplier)
    and, times attention_in_multiplier, to the attention (its output times attention_out_multiplier), both
    added to the residual, then the MLP behind its own norm; the final norm; lm_head times lm_head_multiplier."""
    config, inner = model.config, model.model
    hidden = inner.embed_tokens.weight.detach().double()[input_ids] * config.embedding_multiplier
    for layer in inner.layers:
        normed = reference.rms_norm(hidden, layer.input_layernorm)
        mixed = mixer_reference(layer.mamba, normed, config) * config.ssm_out_multiplier
        attended = attention_reference(layer.self_attn, normed * config.attention_in_multiplier, config)
        hidden = hidden + mixed + attended * config.attention_out_multiplier
        hidden = hidden + mlp_reference(layer.feed_forward, reference.rms_norm(hidden, layer.pre_ff_layernorm), config)
    hidden = reference.rms_norm(hidden, inner.final_layernorm)
    return hidden @ model.lm_head.weight.detach().double().T * config.lm_head_multiplier


def mixers(model) -> list:
    return [(layer.mamba, lambda hidden, m=layer.mamba: mixer_reference(m, hidden, model.config))
            for layer in model.model.layers]


def attention(model) -> list:
    return [(layer.self_attn, lambda hidden, a=layer.self_attn: attention_reference(a, hidden, model.config))
            for layer in model.model.layers]


def mlps(model) -> list:
    return [(layer.feed_forward, lambda hidden, m=layer.feed_forward: mlp_reference(m, hidden, model.config))
            for layer in model.model.layers]


def whole(model) -> list:
    """The model itself, input_ids to logits: the multipliers outside the three modules (embedding, lm_head,
    attention_in/out, ssm_out) and the parallel sum are checked here."""
    return [(model, lambda input_ids: model_reference(model, input_ids))]


def _rms_norm(config) -> bool:
    return bool(getattr(config, "mamba_rms_norm", False))


KNOWN = (
    Known(
        'falcon_h1-batched-one-token',
        (
            'test_cache_bytes_match_formula[context=1]',
            'test_return_dict_scores_and_logits',
            'test_beam_search_with_cache_equals_without',
            'test_greedy_generations_are_not_degenerate',
            'test_left_padded_batch_equals_single',
        ),
        '<5.23',
        'transformers < 5.23 (the all-minors sweep: wrong on 4.53.3 ... 5.22.2 but 5.4.0, which cannot run it; right '
        "from 5.23.0): with mamba_rms_norm (the 3B's), Falcon-H1's gated RMS norm squeezes dimension 1 whenever "
        'seq_len == 1, so a batch of more than one sequence fed one token (every cached decode step of a batched '
        'or beam generate(), a one-token prompt) leaves the mixer [batch, hidden] and its sum with the attention '
        'broadcasts to [batch, batch, hidden]: padded batches raise in SDPA (mask 23 vs keys 24), beams diverge, '
        'a 2 x 1-token prefill caches K and V for 2 tokens; 5.23.0 squeezes only a 2-D input. No upstream issue '
        'found; repro: docs/repros/falcon_h1-batched-one-token.py (logits of a [2, 1] input come out [2, 2, V])',
        _rms_norm,
    ),
    Known(
        'chunked-prefill-falcon_h1',
        ('test_prompt_prefilled_in_two_chunks_equals_one_shot',),
        '<5.13',
        'transformers < 5.13 (the all-minors sweep: wrong on 4.53.3 ... 5.12.1, logits 24-29 % off; right from '
        "5.13.1): Falcon-H1's Mamba-2 mixer started a multi-token input with a cache from a zero conv context and "
        'state: fixed for Bamba, Falcon-H1 and the other Mamba-2 hybrids by huggingface/transformers#46741',
    ),
    Known(
        'falcon_h1-padded-batch-of-one',
        ('test_padded_batch_of_one_equals_unpadded',),
        '<5.15',
        'transformers < 5.15 (the all-minors sweep: wrong on 4.53.3 ... 5.14.1, first-step logits 0.2 % off behind '
        "masked pads of other content; right from 5.15.1): Falcon-H1's mixer zeroes padded positions only when "
        'the batch has more than one row, so a padded batch of one reads its pads: huggingface/transformers#46773 '
        "(names Falcon-H1's inline copy of the mask)",
    ),
)


ARCH = Arch(
    key="falcon_h1",
    family="hybrid",
    model_type="falcon_h1",
    hub_id="tiiuae/Falcon-H1-3B-Base",
    # Falcon-H1-3B's configuration (docs/research/hybrid-configs.md). mamba_rms_norm true: the published count
    # needs it (3,149,256,192 without). mamba_norm_before_gate false: what the trained Falcon-H1 checkpoints are
    # said to use (third-party configs and GGUF loaders; transformers' default is true) -- it changes no
    # parameter, time or memory. The muP multipliers as listed there, rounded; embedding and lm_head multipliers
    # were not found (transformers' defaults, 1.0): a random-weight model's speed and memory do not depend on any.
    synthetic_config=dict(
        vocab_size=65536, hidden_size=2560, intermediate_size=6144, num_hidden_layers=32, num_attention_heads=10,
        num_key_value_heads=2, head_dim=128, mamba_d_ssm=4096, mamba_n_heads=32, mamba_d_head=128,
        mamba_d_state=256, mamba_n_groups=1, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=128,
        mamba_rms_norm=True, mamba_norm_before_gate=False, tie_word_embeddings=False,
        max_position_embeddings=131072, rope_theta=1e11, rms_norm_eps=1e-5,
        attention_in_multiplier=1.0, attention_out_multiplier=0.15, key_multiplier=0.0442, ssm_in_multiplier=0.5,
        ssm_out_multiplier=0.0884, ssm_multipliers=[0.35355, 0.25, 0.17678, 0.5, 0.35355],
        mlp_multipliers=[0.35355, 0.0781],
    ),
    # Published 3,149,387,264 (the safetensors total); the configuration above builds exactly 3,149,387,264 on the
    # meta device (sum of numel over model.parameters(), transformers 5.25.0; 3,149,256,192 without mamba_rms_norm)
    published_params=3.15e9,
    published_digits=3,
    # Three layers, each with a mixer, an attention and an MLP (first and last of each kind: layers 0 and 2);
    # attention head_dim 8 with 4 heads (32, not hidden 64: the 3B's 10 x 128 is not its 2560 either); n_groups
    # 2, where transformers' Mamba-2 code has gone wrong before; chunk 8, so prompts cross SSD chunks;
    # rope_theta 10000, not 1e11, so the rotary turns over the prompts' positions; every multiplier a different
    # value, none 1.0, so a reference or release that drops or swaps one fails.
    tiny_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=8, mamba_d_ssm=128, mamba_n_heads=8, mamba_d_head=16,
                     mamba_n_groups=2, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8,
                     mamba_rms_norm=True, mamba_norm_before_gate=False, rope_theta=10000.0,
                     max_position_embeddings=2048, tie_word_embeddings=False,
                     embedding_multiplier=1.7, lm_head_multiplier=0.6, attention_in_multiplier=1.3,
                     attention_out_multiplier=0.8, key_multiplier=0.7, ssm_in_multiplier=0.9,
                     ssm_out_multiplier=1.2, ssm_multipliers=[0.75, 1.25, 0.85, 1.15, 0.65],
                     mlp_multipliers=[0.95, 1.35]),
    tiny_pad_token=True,
    cache_bytes=cache_bytes,
    layers={"mamba2": Layer(mixers, "float64 sequential SSD recurrence, muP multipliers, grouped gated RMS norm"),
            "attention": Layer(attention, "float64 grouped-query softmax attention, rotary, key multiplier"),
            "mlp": Layer(mlps, "float64 gated SiLU MLP with its gate and down multipliers"),
            "model": Layer(whole, "float64 forward of the whole model from its weights and muP multipliers")},
    known=KNOWN,
    kernels=Kernels(module="transformers.models.falcon_h1.modeling_falcon_h1", ops=MAMBA2_KERNEL_OPS),
    min_transformers="4.53.0",
    unrunnable=(
        (">=5.4,<5.5", "FalconH1Config() itself raises StrictDataclassFieldValidationError: 5.4.0 annotates use_cache "
                       "'int | None' with the default True (every check errored on 5.4.0; 5.3.0 and 5.5.4, 'bool | "
                       "None', build it); no upstream issue found, repro: FalconH1Config() on 5.4.0"),
    ),
    boundaries=("mamba_d_conv", "mamba_chunk_size"),
)
