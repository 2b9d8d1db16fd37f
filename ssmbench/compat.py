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


def mamba_ssm_state_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """The dtype transformers keeps Mamba's SSM state in. 4.x's MambaCache used the model dtype; 5.x keeps
    the scan's last state as computed, in float32 (measured: 72 bytes per channel and layer in a bfloat16
    model on 5.17 and 5.24, not the 40 a bfloat16 state would take)."""
    return torch.float32 if TRANSFORMERS_VERSION.major >= 5 else model_dtype


def kept_in_float32(model, name: str) -> bool:
    """Parameters a model class declares to stay in float32 whatever dtype is asked for (transformers 4.x
    keeps Mamba's A_log so; 5.x does not)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    return any(part in name.split(".") for part in keep)


def static_cache_compile_offered(model) -> bool:
    """Whether generate(cache_implementation="static") compiles this model's decode step. transformers 4.x
    declares it per class (``_supports_static_cache``; False for Mamba, whose generate() then silently stays
    eager); 5.x dropped the flag and compiles every model's decode with a static cache (Mamba included: its
    state is fixed-size) on a GPU."""
    flag = getattr(model, "_supports_static_cache", None)
    return True if flag is None else bool(flag)


def find_cache(output: Any) -> Any:
    """The cache object a forward pass returned: past_key_values (attention), cache_params (Mamba,
    transformers < 5.2x) or cache (Mamba, newer)."""
    for key in ("cache", "past_key_values", "cache_params"):
        value = getattr(output, key, None)
        if value is not None:
            return value
    raise LookupError(f"no cache in {type(output).__name__}; fields: {list(output.keys())}")


def prefill_cache(model, ids: torch.Tensor, pad_token_id: int | None) -> Any:
    """The cache after a forward over ``ids``; where forward returns none unless handed one (Bamba before 5.x),
    the one generate() builds, holding ``ids`` once a single new token is generated. None when neither returns
    one (a LookupError would be confused with the IndexError a forward can raise: IndexError is a LookupError)."""
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)  # outside the try: an IndexError is a LookupError too
        try:
            return find_cache(out)
        except LookupError:
            pass
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, min_new_tokens=1,
                             do_sample=False, return_dict_in_generate=True, pad_token_id=pad_token_id)
    try:
        return find_cache(out)
    except LookupError:
        return None
