"""Cache and state sizes: measured from the objects transformers returns, and the analytic formulas.

Mamba keeps ``layers x intermediate x (state_size + conv_kernel)`` values per sequence whatever the context
(the SSM state in float32 on transformers 5.x, see compat);
an attention model keeps K and V, ``2 x layers x kv_heads x head_dim`` values per token.
"""

from __future__ import annotations

from typing import Any

import torch

from .compat import mamba_ssm_state_dtype


def reachable_tensors(obj: Any) -> list[torch.Tensor]:
    """Every distinct tensor reachable from ``obj`` (attributes, lists, tuples, dicts; modules excluded), in
    a fixed traversal order: two caches of the same structure line up tensor for tensor.

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
        elif hasattr(value, "__dict__") and not isinstance(value, (type, torch.nn.Module)):
            items = list(vars(value).values())
        else:
            continue
        stack.extend((item, depth + 1) for item in reversed(items))  # reversed: depth-first, in order
    return found


def tensor_bytes(obj: Any) -> int:
    """Bytes held by every distinct tensor storage reachable from ``obj`` (views of one storage count once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in reachable_tensors(obj)}
    return sum(storages.values())


def expected_cache_bytes(config: Any, family: str, context: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Analytic cache size for ``context`` tokens of ``batch`` sequences."""
    elem = torch.empty((), dtype=dtype).element_size()
    if family == "ssm":
        state_elem = torch.empty((), dtype=mamba_ssm_state_dtype(dtype)).element_size()
        per_channel = config.state_size * state_elem + config.conv_kernel * elem
        return batch * config.num_hidden_layers * config.intermediate_size * per_channel
    if family == "attention":
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return batch * 2 * config.num_hidden_layers * heads * head_dim * context * elem
    raise ValueError(f"unknown family {family!r}; valid: ssm, attention")
