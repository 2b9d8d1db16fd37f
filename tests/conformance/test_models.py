"""The models themselves: the tiny checkpoints generate varied text (else the other checks lose their power),
full-size synthetic builds have the published parameter counts, and every model is in the requested dtype."""

from __future__ import annotations

import math

import pytest

from ssmbench.compat import kept_in_float32
from ssmbench.tiny import degenerate

pytestmark = pytest.mark.conformance


def test_parameters_in_requested_dtype(lm):
    wrong = [n for n, p in lm.model.named_parameters()
             if p.dim() > 1 and p.dtype != lm.dtype and not kept_in_float32(lm.model, n)]
    assert not wrong, f"{lm.name}: weight matrices not in {lm.dtype}: {wrong[:5]}"


@pytest.mark.source("tiny", "pretrained")  # random weights have no text quality to check
def test_greedy_generations_are_not_degenerate(lm):
    why = degenerate(lm)  # the criterion ssmbench make-tiny trains each tiny checkpoint to
    assert why is None, f"{lm.name}: {why}"


@pytest.mark.source("synthetic", "pretrained")
def test_full_size_model_has_published_parameter_count(lm):
    n = sum(p.numel() for p in lm.model.parameters())
    published, digits = lm.spec.arch.published_params, lm.spec.arch.published_digits
    allowed = 0.5 * 10 ** (math.floor(math.log10(published)) - digits + 1)  # half a unit of the last digit
    assert abs(n - published) <= allowed, (
        f"{lm.name}: {n:,} parameters; published {published:,.0f} ({digits} significant figures)")
