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
    closure = dict(zip(wrapper.__code__.co_freevars, (c.cell_contents for c in wrapper.__closure__ or ()), strict=True))
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


def model_implementation(model: Any) -> str:
    """What a loaded Mamba model runs: hub kernels when transformers' ``kernelize`` swapped them in for this
    model, else what the module resolved for the model's device."""
    if getattr(model, "_use_kernels", False):
        return "hub-kernels (kernelize)"
    return summarize(mamba_ops(model.device.type))


def kernels_available(device_type: str = "cuda") -> bool:
    return device_type == "cuda" and mamba_ops("cuda").get("selective_scan") not in (REFERENCE, "unknown")


class reference_path:
    """Context manager: Mamba runs transformers' reference PyTorch implementation even where kernels are
    installed (5.x: each wrapper's original torch function; 4.x: the fast-path flag off)."""

    def __enter__(self):
        self.mod = importlib.import_module("transformers.models.mamba.modeling_mamba")
        self.saved: dict[str, Any] = {}
        names = ["is_fast_path_available"] if hasattr(self.mod, "is_fast_path_available") else list(MAMBA_OPS.values())
        for name in names:
            self.saved[name] = getattr(self.mod, name)
            value = self.saved[name]
            setattr(self.mod, name, False if name == "is_fast_path_available" else getattr(value, "__wrapped__", value))
        return self

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            setattr(self.mod, name, value)
