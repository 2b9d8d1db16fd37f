"""``graphed``: the suite's CUDA graph of Mamba's fixed-size one-token step (``ssmbench.graphs``), for the
architectures it supports (``Arch.suite_graph``); on a CPU the same static-state loop, uncaptured (the
conformance checks use it there; timings need a GPU)."""

from __future__ import annotations

import weakref

from ..cache import tensor_bytes
from ..graphs import GraphedMambaDecoder
from ..point import SUITE_GRAPH  # noqa: E402  (what its points record as their decode path)
from .base import Backend, BackendUnavailable, decoder_call

_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graphed_decoder(lm):
    """One decoder per loaded model: its captured graphs serve every call of a point (and of calibration after
    it); ``release`` drops it before the next point."""
    if lm.model not in _DECODERS:
        _DECODERS[lm.model] = GraphedMambaDecoder(lm.model)
    return _DECODERS[lm.model]


def graphed_call(lm, ids, new_tokens, runs, nvml=None, energy=True):
    decoder = graphed_decoder(lm)

    def state() -> None:
        slot = decoder.slot_for(ids.shape[0])
        runs.cache_bytes = tensor_bytes(slot.cache) if slot else None  # no slot: a 1-token call never decodes
        runs.capture_s = slot.capture_s if slot else None

    return decoder_call(lm, ids, new_tokens, runs, decoder, state, nvml, energy)


class Graphed(Backend):
    name = "graphed"
    generate_kwargs = None

    def decode_path(self, lm) -> str:
        if not lm.spec.arch.suite_graph:
            raise BackendUnavailable(f"{lm.name}: the graphed backend captures Mamba's fixed-size recurrent step; "
                                     f"for {lm.spec.arch.key} use 'compiled' (transformers' static cache)")
        return SUITE_GRAPH

    def call(self, lm, ids, new_tokens, runs, nvml=None, energy=True):
        return graphed_call(lm, ids, new_tokens, runs, nvml, energy)

    def plain_call(self, lm, ids, new_tokens) -> None:
        graphed_decoder(lm).generate(ids, new_tokens)

    def release(self, lm, next_backend) -> None:
        _DECODERS.pop(lm.model, None)


BACKEND = Graphed()
