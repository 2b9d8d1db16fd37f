"""The names the suite's options accept, importable without torch or transformers: the installed pytest plugin
registers its options in every run of an environment (so that their values parse wherever they appear), and
must not cost an unrelated project a torch import for it. The modules that use these names import them from
here."""

from __future__ import annotations

from pathlib import Path

BACKENDS = ("eager", "compiled", "graphed", "native")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)
SOURCES = ("tiny", "synthetic", "pretrained")
MODEL_SETS = ("auto", *SOURCES)
ARCHS_DIR = Path(__file__).resolve().parent / "archs"


def arch_keys() -> list[str]:
    """The architectures, by their modules' names in ssmbench/archs (each module's ``ARCH.key`` is its name: a
    self-test holds them equal), the reference pair first."""
    found = sorted(p.stem for p in ARCHS_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "base")
    first = [k for k in ("mamba", "phi") if k in found]
    return first + [k for k in found if k not in first]
