"""Deliberate regressions, for proving that the regression gate catches them (``pytest -p pytest_ssmbench.inject
--ssm-inject KIND``): each is real work, memory or state added to every SSM mixer of a loaded model through
forward hooks -- nothing in transformers or the model's weights changes, generated tokens stay the same, and
the figures the gate compares move as such a bug in a release would move them.

- ``slow-mixer``: one more projection per mixer call, as large as the mixer's input projection (``in_proj``):
  extra weight reads and a kernel more in every decode step (a step is a few small kernels per layer).
- ``prefill-memory``: a buffer of 4.5 times the mixer's input held while a multi-token (prefill) call runs --
  a larger activation at the prefill's peak; a one-token decode step is untouched.
- ``cache``: every cache object the model's last mixer is handed holds a quarter more bytes from then on (a
  quarter of what it held after that first call) -- the cache the run measures (``ssmbench.cache.tensor_bytes``)
  and the memory the allocator holds both grow.

``KIND:SCALE`` scales the amount (``slow-mixer:2`` is two projections' worth). The hooks sit on transformers'
modules: the ``native`` backend (mamba-ssm's own model on the same weights) runs without them. Their Python
counters stay still while torch.compile traces them (a counter read there would recompile every call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

KINDS = ("slow-mixer", "prefill-memory", "cache")
PREFILL_FACTOR = 4.5  # prefill-memory: elements held, per element of the mixer's input
CACHE_FRACTION = 0.25  # cache: bytes added, per byte the cache held at its first use


class InjectionError(ValueError):
    pass


def parse(value: str) -> tuple[str, float]:
    """``KIND`` or ``KIND:SCALE`` -> (kind, scale); a bad one names the valid kinds."""
    kind, _, scale = value.partition(":")
    if kind not in KINDS:
        raise InjectionError(f"unknown injection {kind!r}; valid: {', '.join(KINDS)} (optionally KIND:SCALE)")
    try:
        factor = float(scale) if scale else 1.0
    except ValueError:
        factor = -1.0
    if not factor > 0 or factor == float("inf"):
        raise InjectionError(f"--ssm-inject {value}: the scale must be a number > 0")
    return kind, factor


@dataclass
class Injection:
    kind: str
    scale: float
    mixers: int = 0
    calls: int = 0  # mixer calls the injection acted on
    bytes_added: int = 0  # prefill-memory and cache: bytes allocated by the injection, in total
    handles: list = field(default_factory=list)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def ssm_mixers(lm: Any) -> list[torch.nn.Module]:
    """The model's SSM mixers: every layer of each kind whose name starts with ``mamba`` (``Arch.layers``)."""
    found = []
    for kind, layer in lm.spec.arch.layers.items():
        if kind.startswith("mamba"):
            found += [module for module, _ in layer.find(lm.model)]
    return found


def _counting() -> bool:
    """Whether the hooks may keep their Python counters: not while torch.compile traces them (a counter read in
    a traced function is a guard, and every call would recompile)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return not (compiling and compiling())


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _caches(args: tuple, kwargs: dict) -> list[Any]:
    """The cache objects among a mixer's arguments (``cache`` since 5.25, ``cache_params`` before)."""
    def is_cache(value: Any) -> bool:
        return value is not None and not isinstance(value, torch.Tensor) and any(
            cls.__name__.endswith("Cache") for cls in type(value).__mro__)

    return [v for v in (*args[1:], *kwargs.values()) if is_cache(v)]


def inject(lm: Any, kind: str, scale: float = 1.0) -> Injection:
    """Put the regression ``kind`` into every SSM mixer of the loaded model ``lm``; returns what was done (and
    the hooks' handles, to take it out again)."""
    from .cache import reachable_tensors, tensor_bytes

    if kind not in KINDS:
        raise InjectionError(f"unknown injection {kind!r}; valid: {', '.join(KINDS)}")
    injection = Injection(kind, scale)
    mixers = ssm_mixers(lm)
    last = mixers[-1] if mixers else None
    for mixer in mixers:
        injection.mixers += 1
        if kind == "slow-mixer":
            proj = getattr(mixer, "in_proj", None)
            rows = proj.out_features if isinstance(proj, torch.nn.Linear) else 4 * lm.model.config.hidden_size
            rows = max(1, round(rows * scale))
            gen = torch.Generator(device="cpu").manual_seed(injection.mixers)
            weight = (torch.randn(rows, lm.model.config.hidden_size, generator=gen) * 0.02).to(
                device=lm.device, dtype=lm.dtype)

            def slow(module, args, kwargs, output, weight=weight):
                if _counting():
                    injection.calls += 1
                extra = torch.nn.functional.linear(_hidden(args, kwargs).to(weight.dtype), weight)
                # used, so no compiler drops it; zero, so the outputs stay what they were
                zero = (extra.amax(dim=-1, keepdim=True) * 0).nan_to_num(0.0, 0.0, 0.0)
                if isinstance(output, tuple):
                    return (output[0] + zero.to(output[0].dtype), *output[1:])
                return output + zero.to(output.dtype)

            injection.handles.append(mixer.register_forward_hook(slow, with_kwargs=True))
        elif kind == "prefill-memory":
            def grow(module, args, kwargs):
                hidden = _hidden(args, kwargs)
                if hidden.dim() == 3 and hidden.shape[1] > 1:
                    buffer = torch.zeros(round(hidden.numel() * PREFILL_FACTOR * scale), dtype=hidden.dtype,
                                         device=hidden.device)
                    if _counting():
                        injection.calls += 1
                        injection.bytes_added += buffer.numel() * buffer.element_size()
                    module.ssmbench_injected_buffer = buffer  # alive until the mixer's call returns

            def release(module, args, kwargs, output):
                module.__dict__.pop("ssmbench_injected_buffer", None)

            injection.handles.append(mixer.register_forward_pre_hook(grow, with_kwargs=True))
            injection.handles.append(mixer.register_forward_hook(release, with_kwargs=True))
        elif kind == "cache" and mixer is last:
            def enlarge(module, args, kwargs, output):
                if not _counting():  # inside a compiled region (a decode step): the cache is enlarged at its
                    return  # first eager use, the prefill
                for cache in _caches(args, kwargs):
                    if "ssmbench_injected" in vars(cache):
                        continue
                    injection.calls += 1
                    extra = max(1, round(tensor_bytes(cache) * CACHE_FRACTION * scale))
                    device = next((t.device for t in reachable_tensors(cache)), lm.device)
                    cache.ssmbench_injected = torch.zeros(extra, dtype=torch.uint8, device=device)
                    injection.bytes_added += extra

            injection.handles.append(mixer.register_forward_hook(enlarge, with_kwargs=True))
    return injection
