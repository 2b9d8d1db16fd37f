"""Batching: a left-padded batch of prompts of different lengths generates exactly what each prompt
generates alone. For Mamba, padded positions must not leak into the conv and SSM states (transformers#31540);
transformers' own Mamba tests do not check this."""

from __future__ import annotations

import pytest

from ssmbench.compare import assert_same_generation
from ssmbench.inputs import RAGGED_PROMPTS

pytestmark = pytest.mark.conformance

NEW = 12


def test_left_padded_batch_equals_single(lm):
    enc = lm.encode(RAGGED_PROMPTS)
    assert (enc["attention_mask"] == 0).any(), "the prompts must need padding for this check to mean anything"
    batch = lm.generate(RAGGED_PROMPTS, max_new_tokens=NEW, min_new_tokens=NEW)
    width = enc["input_ids"].shape[1]
    for i, prompt in enumerate(RAGGED_PROMPTS):
        single = lm.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, return_dict_in_generate=True,
                             output_logits=True)
        plen = lm.encode(prompt)["input_ids"].shape[1]
        assert_same_generation(
            f"{lm.name}: row {i} of a left-padded batch ({width - plen} pad tokens) vs alone",
            batch[i, width:], single.sequences[0, plen:], [s[0] for s in single.logits], lm.dtype,
            lm.tokenizer.decode, lm.noise_floor,
        )
