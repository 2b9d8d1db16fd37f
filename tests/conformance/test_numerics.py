"""Numerics: transformers' layers against independent float64 references (ssmbench.reference), on the
inputs each layer really sees during a forward pass of the model."""

from __future__ import annotations

import pytest
import torch

from pytest_ssmbench.fixtures import xfail_known
from ssmbench import reference
from ssmbench.compare import assert_logits_close
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance


def _run_prompts(lm):
    enc = lm.encode(PROMPTS[0])
    return lambda: lm.model(input_ids=enc["input_ids"], use_cache=False)


@pytest.mark.needs("layer_reference")
@pytest.mark.parametrize("layer", [0, -1])
def test_layer_matches_float64_reference(lm, layer, request):
    """The architecture's characteristic layer (Mamba's mixer, Phi's attention, ...) against its float64
    reference (``Arch.layer_reference``), on the input it really sees in a forward pass."""
    arch = lm.spec.arch
    module, expected_of = arch.layer_reference(lm.model, layer)
    if hasattr(module, "A_log"):  # an SSM mixer (a hybrid's other layers are attention)
        xfail_known(request, lm, "mamba2-grouped-ssd", "mamba2-grouped-norm", "bamba-grouped-norm")
    else:
        xfail_known(request, lm, "bamba-partial-rotary")
    with torch.no_grad():
        hidden, output = reference.capture(module, _run_prompts(lm))
        expected = expected_of(hidden)
    assert_logits_close(f"{lm.name}: layer {layer} {type(module).__name__} vs {arch.reference_name}", output,
                        expected, lm.dtype)
