"""``compiled``: the fastest decode transformers offers -- ``generate(cache_implementation="static")``, which
compiles the decode step (torch.compile, CUDA graphs) on a GPU. Where transformers offers none for the model
(Mamba on 4.x ignores the static cache, with a warning: a "compiled" point would be an eager one under another
name), the suite's CUDA graph where the architecture supports it, else unavailable."""

from __future__ import annotations

import weakref

from .. import compat
from ..point import TRANSFORMERS_STATIC
from .base import Backend, BackendUnavailable
from .graphed import SUITE_GRAPH, graphed_call, graphed_decoder

_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # models whose decode torch.compile holds


class Compiled(Backend):
    name = "compiled"
    generate_kwargs = {"cache_implementation": "static"}

    def decode_path(self, lm) -> str:
        if compat.static_cache_compile_offered(lm.model):
            return TRANSFORMERS_STATIC
        if lm.spec.arch.suite_graph:
            return SUITE_GRAPH
        raise BackendUnavailable(f"{lm.name}: transformers {compat.TRANSFORMERS_VERSION} offers no compiled decode "
                                 f"for {lm.spec.arch.model_type} (its static cache is ignored) and the suite's graph "
                                 "does not support it")

    def _graph(self, lm) -> bool:
        return self.decode_path(lm) == SUITE_GRAPH

    def streams(self, lm) -> bool:  # the suite's graph, where it stands in, takes no streamer
        return not self._graph(lm)

    def call(self, lm, ids, new_tokens, runs, nvml=None, energy=True):
        if self._graph(lm):
            return graphed_call(lm, ids, new_tokens, runs, nvml, energy)
        return super().call(lm, ids, new_tokens, runs, nvml, energy)

    def plain_call(self, lm, ids, new_tokens) -> None:
        if self._graph(lm):
            graphed_decoder(lm).generate(ids, new_tokens)
        else:
            super().plain_call(lm, ids, new_tokens)

    def prepare(self, lm) -> None:
        try:
            if self.decode_path(lm) == TRANSFORMERS_STATIC:
                _COMPILED[lm.model] = True
        except BackendUnavailable:
            pass

    def release(self, lm, next_backend) -> None:
        """torch.compile's compiled code and CUDA-graph pools, unless the next point is a compiled one too
        (its graphs are kept on purpose)."""
        if next_backend is not self and _COMPILED.pop(lm.model, False):
            import torch._dynamo as dynamo

            dynamo.reset()

    def keeps_workspaces(self, lm) -> bool:
        return _COMPILED.get(lm.model, False)

    def settles(self, lm) -> bool:
        return self.decode_path(lm) == TRANSFORMERS_STATIC and lm.device.type == "cuda"


BACKEND = Compiled()
