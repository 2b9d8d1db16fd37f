"""The architectures, one module each (``ARCH`` in it). Adding one: a module here, its entry in ``MODULES``,
and its tiny checkpoint (``python scripts/make_tiny_checkpoints.py --only KEY``)."""

from __future__ import annotations

from . import falcon_mamba, mamba, phi, qwen2
from .base import FAMILIES, TINY_DIR, Arch, Kernels

# The reference pair first. mamba2.py is written (configs, SSD reference, cache formula, tiny checkpoint) but
# not registered yet: transformers' Mamba-2 fails its float64 reference with n_groups > 1 on every release
# tried before 5.24 (4.46.3, 4.52.4, 5.0.0, 5.17.0), which needs the version predicates of issue #16.
MODULES = (mamba, phi, falcon_mamba, qwen2)
ARCHS: dict[str, Arch] = {m.ARCH.key: m.ARCH for m in MODULES}

__all__ = ["ARCHS", "FAMILIES", "TINY_DIR", "Arch", "Kernels"]
