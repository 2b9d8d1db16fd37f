"""mamba-ssm's Triton kernels with one configuration each, for runs that time nothing (issue #36 item 5).

mamba-ssm's Triton kernels (the Mamba-2 SSD scan, its gated norm, the one-token state update) are
``triton.autotune`` kernels with up to a dozen configurations each. The first call for a new set of dimensions
compiles and times every configuration: on a fresh H200 that took 104 s for a tiny Mamba-2 in float32 and 339 s
for the full-size one in bfloat16 (baselines/h200/runs/2026-11-29-1356), most of a GPU quick tier. A conformance
check does not care which tile is fastest, only that the kernel computes the right thing, so for a run that times
nothing the suite gives each autotuner one configuration -- the one with the smallest tile (the product of its
``BLOCK_SIZE_*`` times its pipeline stages), mamba-ssm's own choice in its deterministic mode -- and Triton
compiles that one and times none. Timed runs keep the full autotuning: a pinned tile could be slower than the
tuned one and would bias the SSM's figures.

This reads Triton's ``Autotuner.configs`` (an internal): where no autotuner of that shape is found the run
autotunes as usual, and says so once (``Pinned.note``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any

PACKAGE = "mamba_ssm.ops.triton"


def _tile(config: Any) -> int:
    kwargs = getattr(config, "kwargs", {}) or {}
    blocks = math.prod(v for k, v in kwargs.items() if k.startswith("BLOCK_SIZE_") and isinstance(v, int))
    return blocks * (getattr(config, "num_stages", 1) or 1)


def smallest(configs: list[Any]) -> Any:
    """The configuration with the smallest tile (first of equals): it fits the shared memory of any GPU the
    larger ones fit."""
    return min(configs, key=_tile)


def _is_autotuner(obj: Any) -> bool:
    return type(obj).__name__ == "Autotuner" and isinstance(getattr(obj, "configs", None), list)


def autotuners(package: str = PACKAGE) -> list[tuple[str, Any]]:
    """Every Triton autotuner of ``package`` and its submodules, by ``module.name``; each module is imported
    (one that fails to import is left out). An attribute wrapped by ``triton.heuristics`` is unwrapped through
    its ``fn``. Empty where the package is not installed."""
    try:
        if importlib.util.find_spec(package) is None:
            return []
        root = importlib.import_module(package)
    except Exception:  # noqa: BLE001 -- an install a new torch or Triton breaks is not ours to crash on
        return []
    modules = [root]
    try:  # walk_packages imports subpackages itself: a subpackage that raises is skipped (onerror), not fatal
        infos = list(pkgutil.walk_packages(getattr(root, "__path__", []), prefix=package + ".",
                                           onerror=lambda _name: None))
    except Exception:  # noqa: BLE001
        infos = []
    for info in infos:
        try:
            modules.append(importlib.import_module(info.name))
        except Exception:  # noqa: BLE001 -- a kernel module this GPU or build cannot import is not ours to fix
            continue
    found: dict[int, tuple[str, Any]] = {}
    for module in modules:
        for name, obj in list(vars(module).items()):
            for _ in range(4):  # heuristics(autotune(jit)) or autotune(heuristics(jit))
                if _is_autotuner(obj):
                    found.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
                obj = getattr(obj, "fn", None)
                if obj is None:
                    break
    return sorted(found.values(), key=lambda item: item[0])


@dataclass
class Pinned:
    """Autotuners given one configuration (``count`` of them); ``restore`` gives each its own list back. Also a
    context manager that restores on leaving."""

    saved: list[tuple[Any, list[Any]]] = field(default_factory=list)
    count: int = 0
    note: str | None = None  # why nothing was pinned where mamba-ssm is installed

    def restore(self) -> None:
        for tuner, configs in self.saved:
            tuner.configs = configs
        self.saved = []

    def __enter__(self) -> Pinned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def pin(package: str = PACKAGE) -> Pinned:
    """Give every autotuner of ``package`` with more than one configuration its smallest one (see the module's
    docstring). Where mamba-ssm is installed but no autotuner is recognised (Triton renamed its class, or the
    package does not import), nothing changes and ``note`` says so (the caller shows it once)."""
    pinned = Pinned()
    try:
        installed = importlib.util.find_spec(package.split(".")[0]) is not None
    except (ImportError, ValueError):
        installed = False
    tuners = autotuners(package) if installed else []
    if installed and not tuners:
        pinned.note = (f"no Triton autotuner recognised in {package}: its kernels autotune as usual (the first "
                       "forward of a Mamba-2 model compiles every configuration)")
    for _, tuner in tuners:
        if len(tuner.configs) > 1:
            pinned.saved.append((tuner, tuner.configs))
            tuner.configs = [smallest(tuner.configs)]
    pinned.count = len(pinned.saved)
    return pinned
