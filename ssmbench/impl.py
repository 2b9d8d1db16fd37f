"""Which implementation transformers resolved for an SSM's operations: the CUDA kernels of mamba-ssm /
causal-conv1d, or the reference PyTorch loop. Read from what transformers itself resolved (the closures of
its kernel-fallback wrappers in 5.x; the module's fast-path flag in 4.x), not from installed packages, in the
modeling module each architecture names (``Arch.kernels``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .archs import ARCHS, Kernels

MAMBA = ARCHS["mamba"].kernels
# The operations transformers' Mamba mixer dispatches, by the name of the wrapper in modeling_mamba (5.x).
MAMBA_OPS = MAMBA.ops
REFERENCE = "torch-reference"
_ABSENT = object()  # a module-level name reference_path found missing, and removes again


def _resolved(wrapper: Any) -> Any:
    """The implementation a transformers kernel-fallback wrapper calls (a closure variable)."""
    closure = dict(zip(wrapper.__code__.co_freevars, (c.cell_contents for c in wrapper.__closure__ or ()), strict=True))
    return closure.get("implementation", getattr(wrapper, "__wrapped__", wrapper))


def _origin(fn: Any) -> str:
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("transformers"):
        return REFERENCE
    return module.split(".")[0] or REFERENCE


def ssm_ops(kernels: Kernels, device_type: str = "cuda") -> dict[str, str]:
    """Per operation, what an SSM mixer on ``device_type`` runs: a package name or ``torch-reference``."""
    mod = importlib.import_module(kernels.module)
    if hasattr(mod, kernels.fast_path_flag):  # transformers 4.x: one flag picks cuda_kernels_forward
        fast = bool(getattr(mod, kernels.fast_path_flag)) and device_type == "cuda"
        return {op: kernels.flag_packages.get(op, "unknown") if fast else REFERENCE for op in kernels.ops}
    if _global_regime(mod, kernels):  # seen 4.56.2 ... 5.14.1, Mamba-1: the forward checks module-level functions
        fns = {name: getattr(mod, name, None) for name in kernels.global_ops.values()}
        fast = all(fn is not None for fn in fns.values()) and all(
            any(getattr(mod, name, None) is not None for name in names) for names in kernels.global_extra)
        ops = {op: _origin(fns[name]) if fast else REFERENCE for op, name in kernels.global_ops.items()}
        if device_type != "cuda":
            ops = {op: v if v == REFERENCE else f"{v} (unused off CUDA)" for op, v in ops.items()}
        return ops
    ops = {}
    for op, attr in kernels.ops.items():
        wrapper = getattr(mod, attr, None)
        ops[op] = _origin(_resolved(wrapper)) if wrapper is not None else "unknown"
        if device_type != "cuda" and ops[op] not in (REFERENCE, "unknown"):
            ops[op] = f"{ops[op]} {FORCED_OFF_CUDA}"
    return ops


# transformers' kernel-fallback wrappers (seen 5.17 ... 5.24) call the installed package for tensors on any
# device: an SSM on a CPU, with mamba-ssm or causal-conv1d installed, dies in a CUDA kernel ("Expected
# x.is_cuda() to be true"; seen on the H200 with 5.17.0). The suite runs such a model's mixers on the reference
# path (``force_reference_off_cuda``), as transformers 4.x did off CUDA by itself.
FORCED_OFF_CUDA = "(called for CPU tensors too: the suite forces the reference path)"
FORCED_SUMMARY = f"{REFERENCE} (forced: this transformers calls the installed CUDA kernels for CPU tensors too)"


def kernels_called_off_cuda(kernels: Kernels) -> bool:
    """Whether the architecture's modeling module has kernel-fallback wrappers resolved to a package: they
    would run for a model on any device."""
    mod = importlib.import_module(kernels.module)
    if hasattr(mod, kernels.fast_path_flag) or _global_regime(mod, kernels):
        return False  # 4.x's flag and 4.56-5.14's module-level functions go with a device check in the forward
    wrappers = [getattr(mod, attr, None) for attr in kernels.ops.values()]
    return any(w is not None and _origin(_resolved(w)) != REFERENCE for w in wrappers)


def force_reference_off_cuda(model: Any, kernels: Kernels) -> bool:
    """For a model off CUDA whose modeling module would call CUDA kernels: each mixer's forward runs inside
    ``reference_path`` (hooks; the module is restored after every call, raising or not). True if hooked."""
    if model.device.type == "cuda" or not kernels_called_off_cuda(kernels):
        return False
    mixers = [m for m in model.modules()
              if type(m).__module__ == kernels.module and type(m).__name__.endswith("Mixer")] or [model]
    for mixer in mixers:
        active: list[reference_path] = []
        mixer.register_forward_pre_hook(
            lambda _m, _a, active=active: active.append(reference_path(kernels).__enter__()))
        mixer.register_forward_hook(lambda _m, _a, _o, active=active: active.pop().__exit__(None, None, None),
                                    always_call=True)
    model._ssmbench_reference_off_cuda = True
    return True


def _global_regime(mod: Any, kernels: Kernels) -> bool:
    """The modeling module has neither a fast-path flag nor a scan wrapper: its forward checks module-level
    kernel functions (5.x sets them when the first mixer is built, through ``lazy_load_kernel``: until then
    they are absent, which reads as not available)."""
    return (bool(kernels.fast_globals()) and not hasattr(mod, kernels.fast_path_flag)
            and not hasattr(mod, kernels.ops["selective_scan"]))


def mamba_ops(device_type: str = "cuda") -> dict[str, str]:
    """``ssm_ops`` for Mamba (v1), the reference pair's SSM: what the header reports."""
    return ssm_ops(MAMBA, device_type)


def summarize(ops: dict[str, str]) -> str:
    """One word for the header and tables: cuda-kernels, torch-reference, or mixed with details."""
    values = set(ops.values())
    if values == {REFERENCE}:
        return REFERENCE
    if all(v == REFERENCE or v.endswith(FORCED_OFF_CUDA) for v in values):
        return FORCED_SUMMARY  # the loader's models (the header): each is hooked, see model_implementation
    if REFERENCE not in values and all(not v.endswith("CUDA)") for v in values):
        return "cuda-kernels"
    return "mixed (" + ", ".join(f"{k}={v}" for k, v in ops.items()) + ")"


def scan_on_reference(ops: dict[str, str]) -> bool:
    """The slow case worth a warning: the sequence scan itself runs the per-token PyTorch loop."""
    return ops.get("selective_scan") == REFERENCE


def model_implementation(model: Any, kernels: Kernels = MAMBA) -> str:
    """What a loaded SSM runs: hub kernels when transformers' ``kernelize`` swapped them in for this model,
    else what its modeling module resolved for the model's device."""
    if getattr(model, "_use_kernels", False):
        return "hub-kernels (kernelize)"
    if getattr(model, "_ssmbench_reference_off_cuda", False):
        return FORCED_SUMMARY
    if model.device.type != "cuda" and kernels_called_off_cuda(kernels):
        return "installed CUDA kernels, called for CPU tensors (not forced to the reference path: will fail)"
    return summarize(ssm_ops(kernels, model.device.type))


def kernels_available(device_type: str = "cuda", kernels: Kernels = MAMBA) -> bool:
    return device_type == "cuda" and ssm_ops(kernels, "cuda").get("selective_scan") not in (REFERENCE, "unknown")


class reference_path:
    """Context manager: the SSM runs transformers' reference PyTorch implementation even where kernels are
    installed (wrappers, seen from 5.17: each one's original torch function; a fast-path flag: off;
    module-level kernel functions: None). A model built inside the context may re-enable its kernels (5.x
    loads them in the mixer's ``__init__``): build models first."""

    def __init__(self, kernels: Kernels = MAMBA):
        self.kernels = kernels

    def __enter__(self):
        self.mod = importlib.import_module(self.kernels.module)
        self.saved: dict[str, Any] = {}
        flag = self.kernels.fast_path_flag
        if hasattr(self.mod, flag):
            names = [flag]
        elif _global_regime(self.mod, self.kernels):  # the forward takes the slow path when any is None
            for name in self.kernels.fast_globals():
                self.saved[name] = getattr(self.mod, name, _ABSENT)
                setattr(self.mod, name, None)
            return self
        else:
            names = list(self.kernels.ops.values())
        for name in names:
            self.saved[name] = getattr(self.mod, name)
            value = self.saved[name]
            setattr(self.mod, name, False if name == flag else getattr(value, "__wrapped__", value))
        return self

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is not _ABSENT:
                setattr(self.mod, name, value)
            elif getattr(self.mod, name, _ABSENT) is None:  # still the None set here: a mixer built inside the
                delattr(self.mod, name)                      # context (5.x lazy loading) set its own; keep that
