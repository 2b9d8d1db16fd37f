"""A model split over two GPUs with device_map="auto" generates what it generates on one."""

from __future__ import annotations

import pytest
import torch

from ssmbench.bench import weight_bytes
from ssmbench.compare import assert_same_generation
from ssmbench.compat import dtype_kwargs
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance


@pytest.mark.source("tiny")
def test_sharded_over_two_gpus_generates_the_same(lm):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        pytest.skip(f"{lm.name}: needs 2+ GPUs visible to this process, found {count} (under xdist each worker "
                    "holds one GPU: run this with -n 0)")
    pytest.importorskip("accelerate", reason="device_map='auto' needs accelerate")
    from transformers import AutoModelForCausalLM

    total = weight_bytes(lm.model)
    # Too little room on GPU 0 for the whole model: accelerate must put part of it on GPU 1.
    sharded = AutoModelForCausalLM.from_pretrained(lm.spec.location, device_map="auto", local_files_only=True,
                                                   max_memory={0: total // 2, 1: total * 4}, **dtype_kwargs(lm.dtype))
    placed = set(sharded.hf_device_map.values())
    assert placed == {0, 1}, f"{lm.name}: device_map put the model on {placed}, not split over GPUs 0 and 1"
    enc = lm.encode(PROMPTS[0])
    kwargs = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id,
                  return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        one = lm.model.generate(**enc, **kwargs)
        two = sharded.generate(**{k: v.to(sharded.device) for k, v in enc.items()}, **kwargs)
    plen = enc["input_ids"].shape[1]
    assert_same_generation(f"{lm.name}: sharded over {sorted(placed)} vs one GPU", two.sequences[0, plen:].cpu(),
                           one.sequences[0, plen:].cpu(), [s[0] for s in one.logits], lm.dtype, lm.tokenizer.decode,
                           lm.noise_floor)
