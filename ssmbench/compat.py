"""Differences between the transformers versions the suite supports, handled in one place."""

from __future__ import annotations

from typing import Any

import torch
import transformers
from packaging.version import Version

TRANSFORMERS_VERSION = Version(transformers.__version__)
# transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name warns, later fails).
_DTYPE_KW = "dtype" if TRANSFORMERS_VERSION >= Version("4.56") else "torch_dtype"


def dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """The keyword that asks from_pretrained / from_config for a parameter dtype."""
    return {_DTYPE_KW: dtype}


def find_cache(output: Any) -> Any:
    """The cache object a forward pass returned: past_key_values (attention), cache_params (Mamba,
    transformers < 5.2x) or cache (Mamba, newer)."""
    for key in ("past_key_values", "cache_params", "cache"):
        value = getattr(output, key, None)
        if value is not None:
            return value
    raise LookupError(f"no cache in {type(output).__name__}; fields: {list(output.keys())}")
