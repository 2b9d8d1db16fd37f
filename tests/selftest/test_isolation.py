"""A point's figures must not depend on what ran before it: nothing from an earlier round, point or backend
stays alive into the next one. CPU checks of the mechanisms (no reference cycles keep a returned cache
alive; leftovers of other backends are released); tests/benchmarks/test_isolation.py measures it on a GPU."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from ssmbench import backends, bench
from ssmbench.backends import base as backend_base
from ssmbench.backends import compiled, graphed
from ssmbench.cache import reachable_tensors, tensor_bytes
from ssmbench.loading import load
from ssmbench.registry import resolve_model_set

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


class _Layer:
    def __init__(self, size: int):
        self.keys, self.values = torch.zeros(size), torch.zeros(size)


class _Cache:
    def __init__(self):
        self.layers = [_Layer(4), _Layer(4)]


@pytest.fixture
def gc_off():
    """Only reference counting frees objects: what the cyclic collector would free later counts as alive."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_walking_a_cache_keeps_none_of_its_tensors_alive(gc_off):
    cache = _Cache()
    assert tensor_bytes(cache) == 4 * 4 * 4 and len(reachable_tensors(cache)) == 4
    refs = [weakref.ref(t) for t in (cache.layers[0].keys, cache.layers[1].values)]
    del cache
    assert all(r() is None for r in refs), (
        "the cache's tensors outlived the cache: the walk left a reference cycle holding them, so they are "
        "freed only when the cyclic garbage collector happens to run (inside the next benchmark round)")


@pytest.fixture(scope="module")
def tiny_models():
    return [load(spec, torch.device("cpu"), torch.float32) for spec in resolve_model_set("tiny")
            if not spec.arch.unsupported()]


def test_a_rounds_returned_cache_is_freed_when_the_round_ends(tiny_models, gc_off):
    checked = []
    for lm in tiny_models:
        runs, seen = bench.Runs(), []
        real = backend_base.tensor_bytes

        def spy(cache, seen=seen, real=real):
            seen.append([weakref.ref(t) for t in reachable_tensors(cache)])
            return real(cache)

        backend_base.tensor_bytes = spy
        try:
            call = backends.get("eager").call(lm, bench.prompt_ids(lm, 16), 4, runs)
            call()
            call()
        finally:
            backend_base.tensor_bytes = real
        if not seen:  # transformers 4.x: Mamba's generate() returns no cache, so none can outlive a round
            continue
        checked.append(lm.name)
        alive = [sum(r() is not None for r in refs) for refs in seen]
        assert alive == [0, 0], f"{lm.name}: tensors of each round's returned cache still alive after it: {alive}"
    assert checked, "no model returned a cache to check"


def test_release_drops_other_backends_state(tiny_models, monkeypatch):
    mamba = next(lm for lm in tiny_models if lm.spec.arch.suite_graph)
    graphed.graphed_decoder(mamba)
    mamba.model._cache = object()  # transformers 4.x's reusable static cache from a compiled point
    mamba.model._previous_max_cache_length = 131104  # 5.x: the length every later static cache is sized to
    assert mamba.model in graphed._DECODERS
    bench.release_backend_state(mamba, "eager")
    assert mamba.model not in graphed._DECODERS, "a captured graph (its static state and pool) outlived its point"
    assert getattr(mamba.model, "_cache", None) is None, "transformers' static cache outlived its point"
    assert not hasattr(mamba.model, "_previous_max_cache_length"), "a long point's static-cache length outlived it"
    # leaving compiled points: torch.compile's code and CUDA-graph pools go too (once, not before each point)
    import torch._dynamo as dynamo

    resets = []
    monkeypatch.setattr(dynamo, "reset", lambda: resets.append(1))
    compiled._COMPILED[mamba.model] = True
    bench.release_backend_state(mamba, "compiled")
    assert resets == [], "a compiled point must keep the compiled decode of the points before it"
    bench.release_backend_state(mamba, "eager")
    bench.release_backend_state(mamba, "eager")
    assert resets == [1], f"torch.compile's state was reset {len(resets)} times on leaving compiled points"


def test_a_freed_model_is_not_kept_alive_by_its_graphed_decoder():
    """The suite keeps a graphed decoder per model; were the decoder to hold the model strongly, a model
    freed to load the next one would stay resident (5.6 GB of Mamba weights under every phi-2 point)."""
    spec = next(s for s in resolve_model_set("tiny") if s.arch.suite_graph)
    lm = load(spec, torch.device("cpu"), torch.float32)
    graphed.graphed_decoder(lm).generate(bench.prompt_ids(lm, 8), 3)
    model = weakref.ref(lm.model)
    lm.free()
    assert model() is None, "the freed model is still alive: something (its graphed decoder?) holds it"


def test_point_memory_is_the_median_round_over_its_own_start(tiny_models):
    """The allocator figures as a GPU gives them (faked here): each round's peak over what that round started
    from, the median of the rounds; what the point started on, the backend's held state and the drift kept."""
    from types import SimpleNamespace

    from ssmbench import devices

    lm = tiny_models[0]
    runs = bench.Runs(intervals=[[0.2, 0.01], [0.1, 0.01], [0.1, 0.01], [0.1, 0.01]], new_tokens=[2] * 4,
                      round_start_bytes=[1000, 1100, 1100, 1132], peaks=[9000, 1600, 1632, 1632],
                      energy=[None] * 4, calls=[0.21, 0.11, 0.11, 0.11])
    ctx = SimpleNamespace(resident_allocated=1000, resident_reserved=4096, nvml_process=None, host_available=1)
    point = bench.point_record(lm, "decode", context=8, batch=1, new_tokens=2, profile=devices.profile_for("x"))
    m = bench.finish_point(point, lm, runs, 3, ctx, devices.profile_for("x")).memory
    assert m.extra_peak_rounds_bytes == [500, 532, 500] and m.extra_peak_bytes == 500  # the warm-up's 8 KB: out
    assert (m.resident_allocated_bytes, m.backend_held_bytes, m.round_drift_bytes) == (1000, 100, 32)
