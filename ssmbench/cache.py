"""Cache and state sizes: measured from the objects transformers returns, and the analytic formulas.

Mamba keeps ``layers x intermediate x (state_size + conv_kernel)`` values per sequence whatever the context
(the SSM state in float32 on transformers 5.x, see compat);
an attention model keeps K and V, ``2 x layers x kv_heads x head_dim`` values per token.
"""

from __future__ import annotations

from typing import Any

import torch

from .compat import mamba_ssm_state_dtype


def tensor_bytes(obj: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes held by every distinct tensor reachable from ``obj`` (attributes, lists, tuples, dicts)."""
    seen = set() if _seen is None else _seen
    if _depth > 6 or id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
        items = vars(obj).values()
    else:
        return 0
    return sum(tensor_bytes(v, seen, _depth + 1) for v in items)


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
