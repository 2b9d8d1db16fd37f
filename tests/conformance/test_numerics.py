"""Numerics: transformers' layers against independent float64 references (ssmbench.reference), on the
inputs each layer really sees during a forward pass of the model."""

from __future__ import annotations

import pytest
import torch

from ssmbench import reference
from ssmbench.compare import assert_logits_close
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance


def _run_prompts(lm):
    enc = lm.encode(PROMPTS[0])
    return lambda: lm.model(input_ids=enc["input_ids"], use_cache=False)


@pytest.mark.family("ssm")
@pytest.mark.parametrize("layer", [0, -1])
def test_mamba_mixer_matches_sequential_scan(lm, layer):
    mixer = lm.model.backbone.layers[layer].mixer
    with torch.no_grad():
        hidden, output = reference.capture(mixer, _run_prompts(lm))
        expected = reference.mamba_mixer(mixer, hidden)
    assert_logits_close(f"{lm.name}: layer {layer} mixer vs float64 sequential scan", output, expected, lm.dtype)


@pytest.mark.family("attention")
@pytest.mark.parametrize("layer", [0, -1])
def test_phi_attention_matches_softmax_reference(lm, layer):
    attn = lm.model.model.layers[layer].self_attn
    with torch.no_grad():
        hidden, output = reference.capture(attn, _run_prompts(lm))
        expected = reference.phi_attention(attn, hidden, lm.model.config)
    assert_logits_close(f"{lm.name}: layer {layer} attention vs float64 softmax attention", output, expected,
                        lm.dtype)
