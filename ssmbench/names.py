"""The names the suite's options accept, importable without torch or transformers: the installed pytest plugin
registers its options in every run of an environment (so that their values parse wherever they appear), and
must not cost an unrelated project a torch import for it. The modules that use these names import them from
here."""

from __future__ import annotations

from pathlib import Path

BACKENDS_DIR = Path(__file__).resolve().parent / "backends"
_BACKEND_ORDER = ("eager", "compiled", "graphed", "native")  # the sweep's order; any other after them
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)
SOURCES = ("tiny", "synthetic", "pretrained")
MODEL_SETS = ("auto", *SOURCES)
ARCHS_DIR = Path(__file__).resolve().parent / "archs"


def _modules(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_") and p.stem != "base")


def backend_names() -> list[str]:
    """The decode backends, by their modules' names in ssmbench/backends (``BACKEND.name`` is the file's name)."""
    found = _modules(BACKENDS_DIR)
    return [b for b in _BACKEND_ORDER if b in found] + [b for b in found if b not in _BACKEND_ORDER]


BACKENDS = tuple(backend_names())


def arch_keys() -> list[str]:
    """The architectures, by their modules' names in ssmbench/archs (each module's ``ARCH.key`` is its name: a
    self-test holds them equal), the reference pair first."""
    found = _modules(ARCHS_DIR)
    first = [k for k in ("mamba", "phi") if k in found]
    return first + [k for k in found if k not in first]
