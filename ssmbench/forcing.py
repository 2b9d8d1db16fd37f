"""Forcing an SSM onto transformers' reference PyTorch implementation where kernels are installed: for the
kernels-vs-reference check on a GPU, and off CUDA where a transformers release calls the installed CUDA kernels for
CPU tensors too (5.17 ... 5.24). This needs to know where the modeling module keeps its kernel entry points (4.x's
fast-path flag, 4.56-5.14's module-level functions, 5.17's wrappers, 5.24/5.25's ``kernels`` modules): every such
read is optional -- an entry point of a shape not recognised raises ``ReferenceUnavailable`` naming it -- and
``ssmbench.impl`` checks by behaviour that forcing took."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from .archs import Kernels

_ABSENT = object()  # a module-level name reference_path found missing, and removes again


class ReferenceUnavailable(RuntimeError):
    """The reference path cannot be forced on this transformers: what was not recognised."""


def _hook_reference(model: Any, kernels: Kernels) -> None:
    # the SSM mixers: named so (MambaMixer, BambaMixer, ...) or built so (GraniteMoeHybridMambaLayer)
    mixers = [m for m in model.modules() if type(m).__module__ == kernels.module and (
        type(m).__name__.endswith("Mixer") or (hasattr(m, "in_proj") and hasattr(m, "conv1d")))] or [model]
    for mixer in mixers:
        if getattr(mixer, "_ssmbench_forced", False):  # hooked once only: two stacked pairs would restore the
            continue                                    # module's kernel entries in the wrong order
        mixer._ssmbench_forced = True
        active: list[reference_path | None] = []

        def enter(module, _args, active=active):
            # Off CUDA only, the forcing's purpose: the same model moved to a GPU afterwards runs its kernels there,
            # as any model does.
            first = next(module.parameters(), None)
            on_cuda = first is not None and first.is_cuda
            active.append(None if on_cuda else reference_path(kernels).__enter__())

        def leave(_module, _args, _out, active=active):
            forced = active.pop()
            if forced is not None:
                forced.__exit__(None, None, None)

        mixer.register_forward_pre_hook(enter)
        mixer.register_forward_hook(leave, always_call=True)


def _torch_function(obj: Any) -> Any:
    """transformers' own PyTorch function behind a kernel entry point: through ``functools.wraps``'
    ``__wrapped__`` (5.17's wrappers), reached through a ``kernels`` ``Func`` module's forward where the
    wrapper is one (5.24/5.25 with ``kernels`` installed). None where the shape is not recognised."""
    for _ in range(8):
        if isinstance(obj, torch.nn.Module):
            cells = getattr(type(obj).forward, "__closure__", None) or ()
            inner = [c.cell_contents for c in cells if callable(c.cell_contents)
                     and hasattr(c.cell_contents, "__wrapped__")]
            if len(inner) != 1:
                return None
            obj = inner[0]
            continue
        inner = getattr(obj, "__wrapped__", None)
        if inner is None:
            break
        obj = inner
    module = getattr(obj, "__module__", "") or ""
    return obj if callable(obj) and module.startswith("transformers") and not isinstance(obj, torch.nn.Module) \
        else None


def _global_regime(mod: Any, kernels: Kernels) -> bool:
    """The modeling module has neither a fast-path flag nor a scan wrapper: its forward checks module-level
    kernel functions (5.x sets them when the first mixer is built, through ``lazy_load_kernel``: until then
    they are absent, which reads as not available)."""
    return (bool(kernels.fast_globals()) and not hasattr(mod, kernels.fast_path_flag)
            and not hasattr(mod, kernels.ops["selective_scan"]))


class reference_path:
    """Context manager: the SSM runs transformers' reference PyTorch implementation even where kernels are
    installed (4.x's fast-path flag: off; module-level kernel functions: None; kernel wrappers: each one's
    original torch function). Raises ``ReferenceUnavailable`` where the modeling module has none of these
    shapes. A model built inside the context may re-enable its kernels (5.x loads them in the mixer's
    ``__init__``): build models first."""

    def __init__(self, kernels: Kernels):
        self.kernels = kernels

    def __enter__(self):
        self.mod = importlib.import_module(self.kernels.module)
        self.saved: dict[str, Any] = {}
        flag = self.kernels.fast_path_flag
        if hasattr(self.mod, flag):
            replacements = {flag: False}
        elif _global_regime(self.mod, self.kernels):  # the forward takes the slow path when any is None
            replacements = dict.fromkeys(self.kernels.fast_globals())
        else:
            replacements = {}
            for name in self.kernels.ops.values():
                value = getattr(self.mod, name, _ABSENT)
                torch_fn = None if value is _ABSENT else _torch_function(value)
                if torch_fn is None:
                    raise ReferenceUnavailable(
                        f"{self.kernels.module}.{name}: " + ("absent" if value is _ABSENT else
                                                             f"a {type(value).__name__} the suite cannot unwrap")
                        + " on this transformers; its reference path cannot be forced")
                replacements[name] = torch_fn
        for name, value in replacements.items():
            self.saved[name] = getattr(self.mod, name, _ABSENT)
            setattr(self.mod, name, value)
        return self

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is not _ABSENT:
                setattr(self.mod, name, value)
            elif getattr(self.mod, name, _ABSENT) is None:  # still the None set here: a mixer built inside the
                delattr(self.mod, name)                      # context (5.x lazy loading) set its own; keep that
        return False
