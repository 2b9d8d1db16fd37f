"""The architectures, one module each (``ARCH`` in it). Adding one: a module here, its entry in ``MODULES``,
and its tiny checkpoint (``ssmbench make-tiny --only KEY``)."""

from __future__ import annotations

from . import bamba, falcon_mamba, llama, mamba, mamba2, phi, qwen2
from .base import FAMILIES, TINY_DIR, Arch, Kernels

MODULES = (mamba, phi, mamba2, falcon_mamba, qwen2, bamba, llama)  # the reference pair first
ARCHS: dict[str, Arch] = {m.ARCH.key: m.ARCH for m in MODULES}

__all__ = ["ARCHS", "FAMILIES", "TINY_DIR", "Arch", "Kernels"]
