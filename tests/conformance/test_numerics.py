"""Numerics: transformers' layers against independent float64 references (ssmbench.reference), on the
inputs each layer really sees during a forward pass of the model."""

from __future__ import annotations

import pytest

from ssmbench import reference
from ssmbench.compare import assert_logits_close
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance


def _run_prompts(lm):
    enc = lm.encode(PROMPTS[0])
    return lambda: lm.model(input_ids=enc["input_ids"], use_cache=False)


@pytest.mark.needs("layers")
def test_layer_matches_float64_reference(lm, layer_kind):
    """One kind of layer the architecture has (``Arch.layers``: a Mamba-1 or Mamba-2 mixer, attention of its
    variant, ...), wherever it sits -- its first and its last layer of that kind -- against its float64
    reference, on the input it really sees in a forward pass. A hybrid's attention is checked as its mixers are."""
    kind = lm.spec.arch.layers[layer_kind]
    for where, (module, output, expected) in reference.layer_pairs(lm.model, kind, _run_prompts(lm)).items():
        assert_logits_close(f"{lm.name}: {where} {layer_kind} layer ({type(module).__name__}) vs {kind.reference}",
                            output, expected, lm.dtype)
