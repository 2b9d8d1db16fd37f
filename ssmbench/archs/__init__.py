"""The architectures, one module each (``ARCH`` in it), discovered: adding one is a module here and its tiny
checkpoint (``ssmbench make-tiny --only KEY``); nothing else names it. Their keys, the reference pair first, come
from ``ssmbench.names`` (read from the file names, without importing torch)."""

from __future__ import annotations

import importlib

from ..names import arch_keys
from .base import FAMILIES, TINY_DIR, Arch, Kernels, Known, Layer

ARCHS: dict[str, Arch] = {}
for _key in arch_keys():
    _arch = importlib.import_module(f"{__name__}.{_key}").ARCH
    if _arch.key != _key:
        raise ImportError(f"ssmbench/archs/{_key}.py: its ARCH is keyed {_arch.key!r}, not {_key!r}")
    ARCHS[_key] = _arch

__all__ = ["ARCHS", "FAMILIES", "TINY_DIR", "Arch", "Kernels", "Known", "Layer"]
