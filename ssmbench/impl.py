"""Which implementation transformers resolved for Mamba's operations: the CUDA kernels of mamba-ssm /
causal-conv1d, or the reference PyTorch loop. Read from what transformers itself resolved (the closures of
its kernel-fallback wrappers in 5.x; the module's fast-path flag in 4.x), not from installed packages.
"""

from __future__ import annotations

import importlib
from typing import Any

# The operations transformers' Mamba mixer dispatches, by the name of the wrapper in modeling_mamba (5.x).
MAMBA_OPS = {
    "selective_scan": "mamba_selective_scan",
    "selective_state_update": "mamba_selective_state_update",
    "causal_conv1d": "causal_conv1d_fn",
    "causal_conv1d_update": "causal_conv1d_update",
}
REFERENCE = "torch-reference"


def _resolved(wrapper: Any) -> Any:
    """The implementation a transformers kernel-fallback wrapper calls (a closure variable)."""
    closure = dict(zip(wrapper.__code__.co_freevars, (c.cell_contents for c in wrapper.__closure__ or ())))
    return closure.get("implementation", getattr(wrapper, "__wrapped__", wrapper))


def _origin(fn: Any) -> str:
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("transformers"):
        return REFERENCE
    return module.split(".")[0] or REFERENCE


def mamba_ops(device_type: str = "cuda") -> dict[str, str]:
    """Per operation, what a Mamba mixer on ``device_type`` runs: a package name or ``torch-reference``."""
    mod = importlib.import_module("transformers.models.mamba.modeling_mamba")
    if hasattr(mod, "is_fast_path_available"):  # transformers 4.x: one flag picks cuda_kernels_forward
        fast = bool(mod.is_fast_path_available) and device_type == "cuda"
        return {
            "selective_scan": "mamba_ssm" if fast else REFERENCE,
            "selective_state_update": "mamba_ssm" if fast else REFERENCE,
            "causal_conv1d": "causal_conv1d" if fast else REFERENCE,
            "causal_conv1d_update": "causal_conv1d" if fast else REFERENCE,
        }
    ops = {}
    for op, attr in MAMBA_OPS.items():
        wrapper = getattr(mod, attr, None)
        ops[op] = _origin(_resolved(wrapper)) if wrapper is not None else "unknown"
        if device_type != "cuda" and ops[op] != REFERENCE:
            ops[op] = f"{ops[op]} (unused off CUDA)"
    return ops


def summarize(ops: dict[str, str]) -> str:
    """One word for the header and tables: cuda-kernels, torch-reference, or mixed with details."""
    values = set(ops.values())
    if values == {REFERENCE}:
        return REFERENCE
    if REFERENCE not in values and all(not v.endswith("CUDA)") for v in values):
        return "cuda-kernels"
    return "mixed (" + ", ".join(f"{k}={v}" for k, v in ops.items()) + ")"


def scan_on_reference(ops: dict[str, str]) -> bool:
    """The slow case worth a warning: the sequence scan itself runs the per-token PyTorch loop."""
    return ops.get("selective_scan") == REFERENCE
