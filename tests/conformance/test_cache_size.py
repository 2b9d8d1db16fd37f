"""Cache size: the bytes transformers really holds after a prefill equal the analytic formula, at several
context lengths (Mamba: constant; attention: linear in context)."""

from __future__ import annotations

import pytest
import torch

from ssmbench.cache import expected_cache_bytes, tensor_bytes
from ssmbench.compat import prefill_cache

pytestmark = pytest.mark.conformance


@pytest.mark.needs("cache_bytes")
@pytest.mark.parametrize("context", [1, 16, 64])
def test_cache_bytes_match_formula(lm, context):
    ids = torch.randint(0, lm.tokenizer.vocab_size, (2, context), generator=torch.Generator().manual_seed(0))
    cache = prefill_cache(lm.model, ids.to(lm.device), lm.tokenizer.pad_token_id)
    if cache is None:
        pytest.skip(f"{lm.name}: neither forward(use_cache=True) nor generate() returns a cache here")
    measured = tensor_bytes(cache)
    expected = expected_cache_bytes(lm.spec.arch, lm.model.config, context, lm.dtype, batch=2)
    assert measured == expected, (
        f"{lm.name}: cache holds {measured} bytes after {context} tokens x 2 sequences; formula says {expected}"
    )
