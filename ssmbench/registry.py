"""The one registry of model architectures and the model sets built from it.

An architecture (``ARCHS``, one module each in ``ssmbench/archs``) says how to get a model three ways: the
embedded tiny checkpoint, the real configuration with random weights (``synthetic``), and the real checkpoint
(``pretrained``). A model set expands architectures into ``ModelSpec`` entries; every test is parametrized
from those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .archs import ARCHS, FAMILIES, TINY_DIR, Arch  # noqa: F401  (FAMILIES, TINY_DIR: re-exported)

REPO_ROOT = Path(__file__).resolve().parent.parent

from .names import MODEL_SETS, SOURCES  # noqa: E402,F401  (re-exported)


@dataclass(frozen=True)
class ModelSpec:
    """One model a test runs against: an architecture from one source."""

    arch: Arch
    source: str  # "tiny" | "synthetic" | "pretrained"
    location: str | None = None  # a directory or hub id (tiny / pretrained)
    unavailable: str | None = field(default=None, compare=False)  # why it cannot load, if it cannot

    @property
    def name(self) -> str:
        return f"{self.source}-{self.arch.key}"

    @property
    def family(self) -> str:
        return self.arch.family

    @property
    def large(self) -> bool:
        """Full-size models: slow to copy or save, GPU only."""
        return self.source != "tiny"

    def __str__(self) -> str:
        return self.name


class ModelSetError(ValueError):
    pass


def parse_model_paths(values: list[str] | None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Local checkpoint overrides from ``--model-path KEY=DIR`` options, then ``SSMBENCH_PATH_KEY``."""
    environ = os.environ if environ is None else environ
    paths: dict[str, str] = {}
    for arch in ARCHS.values():
        if environ.get(arch.env_var):
            paths[arch.key] = environ[arch.env_var]
    for value in values or []:
        key, sep, path = value.partition("=")
        if not sep or key not in ARCHS or not path:
            raise ModelSetError(
                f"--model-path expects KEY=DIR with KEY one of {', '.join(ARCHS)}; got {value!r}"
            )
        paths[key] = path
    return paths


def _hf_cache_location(hub_id: str) -> str | None:
    """The snapshot directory of ``hub_id`` in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    found = try_to_load_from_cache(hub_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def pretrained_spec(arch: Arch, paths: dict[str, str]) -> ModelSpec:
    """The real checkpoint, from a local path override or the offline HF cache; says why when absent."""
    if arch.key in paths:
        path = Path(paths[arch.key]).expanduser()
        if not (path / "config.json").is_file():
            return ModelSpec(arch, "pretrained", str(path),
                             unavailable=f"no checkpoint at {path} (looked for {path / 'config.json'})")
        return ModelSpec(arch, "pretrained", str(path))
    cached = _hf_cache_location(arch.hub_id)
    if cached is None:
        return ModelSpec(
            arch, "pretrained", arch.hub_id,
            unavailable=(f"{arch.hub_id} is not in the local Hugging Face cache ({_hf_cache_dir()}) and no "
                         f"local path was given (--ssm-model-path {arch.key}=DIR or {arch.env_var})"),
        )
    return ModelSpec(arch, "pretrained", cached)


def resolve_model_set(name: str, *, paths: dict[str, str] | None = None,
                      archs: list[str] | None = None) -> list[ModelSpec]:
    """Expand a model set name into specs. ``auto``: the tiny checkpoints, plus for each architecture the
    real checkpoint where it is available locally, else the synthetic build (full-size models then run on
    a GPU and skip, saying so, on a CPU)."""
    if name not in MODEL_SETS:
        raise ModelSetError(f"unknown model set {name!r}; valid: {', '.join(MODEL_SETS)}")
    paths = paths or {}
    unknown = sorted(set(archs or ()) - set(ARCHS))
    if unknown:
        raise ModelSetError(f"unknown architecture(s) {', '.join(unknown)}; valid: {', '.join(ARCHS)}")
    for key, given in paths.items():  # a path given on purpose is never silently replaced by another model
        spec = pretrained_spec(ARCHS[key], {key: given})
        if spec.unavailable:
            raise ModelSetError(f"{key}={given} (--ssm-model-path or {ARCHS[key].env_var}): {spec.unavailable}")
    selected = [ARCHS[k] for k in (archs or ARCHS)]
    specs: list[ModelSpec] = []
    if name in ("tiny", "auto"):
        specs += [ModelSpec(arch, "tiny", str(arch.tiny_path)) for arch in selected]
    for arch in selected:
        if name == "synthetic":
            specs.append(ModelSpec(arch, "synthetic"))
        elif name == "pretrained":
            specs.append(pretrained_spec(arch, paths))
        elif name == "auto":
            spec = pretrained_spec(arch, paths)
            specs.append(spec if spec.unavailable is None else ModelSpec(arch, "synthetic"))
    return specs
