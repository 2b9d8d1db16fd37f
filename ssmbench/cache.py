"""Cache and state sizes: measured from the objects transformers returns, and the analytic formulas (each
architecture's own, ``Arch.cache_bytes``: Mamba's fixed state, attention's K and V per token).
"""

from __future__ import annotations

from typing import Any

import torch


def reachable_tensors(obj: Any) -> list[torch.Tensor]:
    """Every distinct tensor reachable from ``obj`` (attributes, lists, tuples, dicts; modules excluded, caches
    that are modules not), in a fixed traversal order: two caches of the same structure line up tensor for
    tensor.

    An explicit stack, not a recursive closure: a nested function that calls itself sits in a reference
    cycle with its cell, and the list of tensors it closes over then outlives the call until the cyclic
    garbage collector runs -- a returned cache's tensors (10.7 GB for phi-2 at 32K) stayed alive into the
    next benchmark round and inflated its peak memory."""
    found: list[torch.Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > 6 or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            found.append(value)
            continue
        if isinstance(value, dict):
            items = list(value.values())
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif hasattr(value, "__dict__") and not isinstance(value, type) and (
                not isinstance(value, torch.nn.Module) or _is_cache(value)):
            items = list(vars(value).values())
        else:
            continue
        stack.extend((item, depth + 1) for item in reversed(items))  # reversed: depth-first, in order
    return found


def _is_cache(value: Any) -> bool:
    """A transformers cache object: in 4.48-4.49 ``Cache`` was a ``torch.nn.Module`` (its tensors then sit in
    plain attributes and ``_buffers``), which the walk otherwise skips -- phi-2's cache read as 0 bytes."""
    return any(cls.__name__ == "Cache" and cls.__module__.endswith("cache_utils") for cls in type(value).__mro__)


def tensor_bytes(obj: Any) -> int:
    """Bytes held by every distinct tensor storage reachable from ``obj`` (views of one storage count once).
    Scalars are not state: a cache's counters (5.25 keeps a 0-d int64 ``cumulative_length_linear`` per linear
    layer) are left out, so the figure stays the state the formula describes."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in reachable_tensors(obj) if t.dim() > 0}
    return sum(storages.values())


def expected_cache_bytes(arch: Any, config: Any, context: int, dtype: torch.dtype, batch: int = 1) -> int | None:
    """Analytic cache size for ``context`` tokens of ``batch`` sequences, from the architecture's formula; None
    where the architecture has none."""
    if arch.cache_bytes is None:
        return None
    return arch.cache_bytes(config, context, dtype, batch)
