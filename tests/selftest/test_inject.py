"""The deliberate regressions of ``ssmbench.inject`` (the gate's proof, ``-p pytest_ssmbench.inject``) on the tiny
models, CPU: each adds what it says -- the work, the prefill's memory, the cache's bytes -- to every SSM mixer and
changes no generated token; an attention model is untouched; taking the hooks out restores the model."""

from __future__ import annotations

import pytest
import torch

from ssmbench import inject
from ssmbench.cache import tensor_bytes
from ssmbench.inputs import PROMPTS
from ssmbench.loading import load
from ssmbench.registry import resolve_model_set

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


@pytest.fixture(scope="module")
def mamba():
    return load(resolve_model_set("tiny", archs=["mamba"])[0], torch.device("cpu"), torch.float32)


def _greedy(lm, n=6):
    return lm.generate(PROMPTS[0], max_new_tokens=n, min_new_tokens=n, return_dict_in_generate=True)


def _flops(lm, ids) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # with autograd on: its module tracker needs it
        lm.model(input_ids=ids)
    return counter.get_total_flops()


def test_slow_mixer_adds_one_input_projection_of_work_per_mixer_and_changes_no_token(mamba):
    ids = mamba.encode(PROMPTS[0])["input_ids"]
    before, tokens = _flops(mamba, ids), _greedy(mamba).sequences
    done = inject.inject(mamba, "slow-mixer")
    try:
        after, injected_tokens = _flops(mamba, ids), _greedy(mamba).sequences
    finally:
        done.remove()
    config = mamba.model.config
    per_mixer = 2 * ids.shape[1] * config.hidden_size * 2 * config.intermediate_size  # in_proj's rows, again
    assert done.mixers == config.num_hidden_layers
    assert after - before == done.mixers * per_mixer, (before, after)
    assert torch.equal(tokens, injected_tokens)
    assert _flops(mamba, ids) == before, "removing the injection did not restore the model"


def test_prefill_memory_holds_a_buffer_during_prefill_only(mamba):
    ids = mamba.encode(PROMPTS[0])["input_ids"]
    done = inject.inject(mamba, "prefill-memory")
    try:
        tokens = _greedy(mamba, n=4).sequences
    finally:
        done.remove()
    config = mamba.model.config
    # one prefill call per mixer (the 3 decode steps after it add nothing), 4.5 x its input, float32
    assert done.calls == config.num_hidden_layers
    assert done.bytes_added == config.num_hidden_layers * round(ids.shape[1] * config.hidden_size * 4.5) * 4
    assert torch.equal(tokens, _greedy(mamba, n=4).sequences)


def test_cache_grows_the_measured_cache_by_a_quarter(mamba):
    from ssmbench.compat import find_cache

    ids = mamba.encode(PROMPTS[0])["input_ids"]

    def cache_bytes() -> int:  # a forward's returned cache (generate() returns none for Mamba on 4.46)
        with torch.no_grad():
            return tensor_bytes(find_cache(mamba.model(input_ids=ids, use_cache=True)))

    plain = cache_bytes()
    done = inject.inject(mamba, "cache")
    try:
        injected = cache_bytes()
    finally:
        done.remove()
    assert done.calls == 1 and injected == plain + round(plain * inject.CACHE_FRACTION)
    assert cache_bytes() == plain


def test_an_attention_model_is_untouched():
    phi = load(resolve_model_set("tiny", archs=["phi"])[0], torch.device("cpu"), torch.float32)
    done = inject.inject(phi, "slow-mixer")
    assert done.mixers == 0 and not done.handles


@pytest.mark.parametrize("value", ["fast-mixer", "cache:0", "cache:x", "slow-mixer:inf"])
def test_a_bad_injection_names_the_valid_ones(value):
    with pytest.raises(inject.InjectionError, match="valid: slow-mixer, prefill-memory, cache|scale must be"):
        inject.parse(value)
