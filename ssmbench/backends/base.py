"""The protocol every decode backend follows, and the two ways a backend's benchmarked call is made: through
transformers' ``generate()`` (eager, compiled) or through a decoder of its own (the suite's CUDA graph,
mamba-ssm's model). The harness (``ssmbench.bench``, ``ssmbench.points``, ``ssmbench.calibrate``) calls only
this; what a backend is lives in its module."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..cache import tensor_bytes
from ..loading import LoadedModel
from ..measure import Nvml, StepClock, synchronize
from ..runs import Runs

Call = Callable[[], None]


class BackendUnavailable(ValueError):
    """This backend cannot run this model here: why (the point is skipped with it)."""


class Backend:
    """One way to decode a loaded model greedily.

    - ``unavailable(lm)``: why it cannot run this model on its device (None: it can);
    - ``decode_path(lm)``: what it runs, as points record it (raises ``BackendUnavailable``);
    - ``prepare(lm)``: before a point, once every backend has released its state;
    - ``call(...)``: one benchmarked call of exactly ``new_tokens`` tokens, timed by a ``StepClock``;
    - ``plain_call(lm, ids, n)``: the same decode the way a user makes it (calibration's reference);
    - ``release(lm, next_backend)``: drop what it keeps between calls (before another point);
    - ``settles(lm)``: its warm-up must wait for torch.compile's CUDA graphs to settle;
    - ``generate_kwargs``: what it adds to ``generate()`` where it decodes through it (None: a loop of its own);
    - ``streams(lm)``: its plain call takes a streamer (generate()'s)."""

    name = ""
    generate_kwargs: dict[str, Any] | None = {}
    needs_gpu = True  # compiled decoding and CUDA graphs are CUDA only

    def unavailable(self, lm: LoadedModel) -> str | None:
        if self.needs_gpu and lm.device.type != "cuda":
            return (f"{lm.name}: the {self.name} backend needs a GPU (compiled decoding and CUDA graphs are CUDA "
                    "only)")
        return None

    def decode_path(self, lm: LoadedModel) -> str:
        raise NotImplementedError

    def prepare(self, lm: LoadedModel) -> None:
        pass

    def call(self, lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs, nvml: Nvml | None = None,
             energy: bool | str = True) -> Call:
        return generate_call(lm, ids, new_tokens, runs, self.generate_kwargs or {}, nvml, energy)

    def plain_call(self, lm: LoadedModel, ids: torch.Tensor, new_tokens: int) -> None:
        lm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **(self.generate_kwargs or {}))

    def release(self, lm: LoadedModel, next_backend: "Backend") -> None:
        pass

    def settles(self, lm: LoadedModel) -> bool:
        return False

    def keeps_workspaces(self, lm: LoadedModel) -> bool:
        """Whether the cuBLAS workspaces must stay between points (captured graphs that use them)."""
        return False

    def streams(self, lm: LoadedModel) -> bool:
        """Its plain call is ``generate()``, which takes a streamer (a token clock); a loop of its own does not."""
        return self.generate_kwargs is not None


def generate_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs, extra: dict[str, Any],
                  nvml: Nvml | None = None, energy: bool | str = True) -> Call:
    """A callable for pytest-benchmark: one greedy ``generate()`` of exactly ``new_tokens`` tokens with ``extra``
    keywords, its steps timed by a ``StepClock`` (a logits processor). ``energy``: as ``StepClock``'s
    (``"call"`` for throughput: its end-to-end time would hold a read at the first token)."""
    def call() -> None:
        clock = StepClock(lm.device, nvml, new_tokens, energy)
        with torch.no_grad():
            clock.start()
            out = lm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, logits_processor=[clock],
                              return_dict_in_generate=True, **extra)
            synchronize(lm.device)
        runs.record(clock, out.sequences.shape[1] - ids.shape[1], lm.device)
        runs.cache_bytes = tensor_bytes(out.past_key_values) if out.past_key_values is not None else None

    return call


def decoder_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs, decoder: Any,
                 state: Callable[[], None], nvml: Nvml | None = None, energy: bool | str = True) -> Call:
    """A benchmarked call through a decoder outside generate() (the suite's graph, mamba-ssm's native one):
    ``decoder.generate(ids, n, on_token)`` timed by the same StepClock; ``state()`` then records what the
    decoder keeps (cache bytes, capture time) in ``runs``."""
    def call() -> None:
        clock = StepClock(lm.device, nvml, new_tokens, energy)
        clock.start()
        tokens = decoder.generate(ids, new_tokens, on_token=lambda: clock(None, None))
        synchronize(lm.device)
        runs.record(clock, tokens.shape[1], lm.device)
        state()

    return call
