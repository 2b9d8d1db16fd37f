"""Cache conformance: cached decoding is a pure speed-up. Greedy tokens with the cache equal those recomputed
from scratch, and step-by-step decode logits equal the full forward pass at the same positions."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ssmbench.compare import assert_logits_close, assert_same_generation
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance

NEW = 16


def test_cached_greedy_equals_uncached(lm):
    prompt_len = lm.encode(PROMPTS[0])["input_ids"].shape[1]
    common = dict(max_new_tokens=NEW, min_new_tokens=NEW, return_dict_in_generate=True, output_logits=True)
    without = lm.generate(PROMPTS[0], use_cache=False, **common)
    cached = lm.generate(PROMPTS[0], use_cache=True, **common)
    assert_same_generation(
        f"{lm.name}: greedy with cache vs without", cached.sequences[0, prompt_len:],
        without.sequences[0, prompt_len:], [s[0] for s in without.logits], lm.dtype, lm.tokenizer.decode,
        lm.noise_floor,
    )


class ForceTokens(LogitsProcessor):
    """Teacher forcing through generate(): step i may only emit ``tokens[i]``."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens, self.step = tokens, 0

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[:, self.step]] = 0.0
        self.step += 1
        return forced


@pytest.mark.parametrize("prefill", [1, 7])
def test_step_decode_logits_match_full_forward(lm, prefill):
    """Prefill ``prefill`` tokens, then decode the rest of a fixed sequence one token at a time through the
    cache; each step's logits must equal the full (cache-free) forward pass at that position."""
    ids = lm.generate(PROMPTS[2], max_new_tokens=20, min_new_tokens=20)[:, :24]  # a natural sequence
    full = lm.logits(ids, use_cache=False)
    rest = ids[:, prefill:]
    out = lm.generate(ids[:, :prefill], max_new_tokens=rest.shape[1], min_new_tokens=rest.shape[1], use_cache=True,
                      logits_processor=LogitsProcessorList([ForceTokens(rest)]), return_dict_in_generate=True,
                      output_logits=True)
    assert torch.equal(out.sequences, ids), f"{lm.name}: forcing failed: {out.sequences.tolist()}"
    stepped = torch.stack(out.logits, dim=1)  # [1, steps, vocab]: logits for positions prefill-1 .. L-2
    assert_logits_close(f"{lm.name}: decode-step logits vs full forward (prefill {prefill})",
                        stepped, full[:, prefill - 1 : -1], lm.dtype, lm.noise_floor)
