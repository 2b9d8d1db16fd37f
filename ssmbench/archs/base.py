"""What the suite knows about one architecture, in one place. Generic code asks the architecture; a piece an
architecture lacks (no float64 reference, no cache formula, no kernels) makes the check that needs it skip,
saying so -- never crash, never pass without testing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TINY_DIR = REPO_ROOT / "fixtures" / "tiny"

FAMILIES = ("ssm", "attention", "hybrid")

@dataclass(frozen=True)
class Layer:
    """A kind of layer an architecture has (a Mamba-1 mixer, a Mamba-2 mixer, attention of some variant, ...):
    ``find(model)`` lists every layer of the kind in the model, in order, each as (the module whose input and
    output are captured, its float64 function of that input); ``reference`` says what that function computes."""

    find: Callable[[Any], "list[tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]]"]
    reference: str


@dataclass(frozen=True)
class Known:
    """Behaviour of some transformers releases that differs from what a check holds it to: the checks it fails
    (a test's name, or ``name[param=value]`` for some of its instances), the releases (a version specifier; empty:
    every release), the configurations (None: all), and why -- the releases it was seen on and the upstream issue
    or a minimal repro. The plugin marks those checks strict xfail where it holds, so a fix upstream shows up as
    XPASS; no test names an architecture."""

    key: str
    checks: tuple[str, ...]
    releases: str
    reason: str
    config: Callable[[Any], bool] | None = None

    def holds(self, version, config) -> bool:
        from packaging.specifiers import SpecifierSet

        in_range = SpecifierSet(self.releases).contains(version, prereleases=True)  # a pre-release or a dev build too
        return in_range and (self.config is None or bool(self.config(config)))

    def matches(self, test: str, params: dict[str, Any]) -> bool:
        for check in self.checks:
            name, _, rest = check.partition("[")
            if name != test:
                continue
            wanted = dict(item.split("=", 1) for item in rest.rstrip("]").split(",") if item) if rest else {}
            if all(str(params.get(k)) == v for k, v in wanted.items()):
                return True
        return False


# The packages behind each operation, what 4.x's one fast-path flag implies.
KERNEL_PACKAGES = {"selective_scan": "mamba_ssm", "selective_state_update": "mamba_ssm",
                   "causal_conv1d": "causal_conv1d", "causal_conv1d_update": "causal_conv1d"}


@dataclass(frozen=True)
class Kernels:
    """Where transformers resolves an SSM's fused kernels: the modeling module, and per operation the name of
    the module-level wrapper it calls (seen from 5.17) -- or the module's one fast-path flag (4.x; Mamba-2 and
    Bamba in 5.x before the wrappers) -- or, where the forward computes that flag itself from module-level kernel
    functions (Mamba-1 and FalconMamba, seen 4.56.2 ... 5.14.1: ``None`` when not installed), those functions."""

    module: str  # e.g. "transformers.models.mamba.modeling_mamba"
    ops: dict[str, str]  # operation -> wrapper name in ``module``
    fast_path_flag: str = "is_fast_path_available"  # 4.x
    flag_packages: dict[str, str] = field(default_factory=lambda: dict(KERNEL_PACKAGES))  # 4.x: op -> package
    global_ops: dict[str, str] = field(default_factory=dict)  # operation -> module-level kernel function
    # further module-level functions the fast path needs, each a tuple of the names releases gave it
    # (FalconMamba's inner function: mamba_inner_fn in 4.56, falcon_mamba_inner_fn in 5.x)
    global_extra: tuple[tuple[str, ...], ...] = ()

    def fast_globals(self) -> tuple[str, ...]:
        """Every module-level name the fast path may check (alternatives included)."""
        return (*self.global_ops.values(), *(name for names in self.global_extra for name in names))


@dataclass(frozen=True)
class Arch:
    key: str  # short name used in options and env vars: --ssm-model-path KEY=DIR, SSMBENCH_PATH_KEY
    family: str  # "ssm", "attention" or "hybrid": reporting and scaling expectations
    model_type: str  # transformers' config.model_type
    hub_id: str  # the real checkpoint
    synthetic_config: dict[str, Any]  # the real checkpoint's config values
    published_params: float  # parameter count of the real checkpoint, as published ...
    published_digits: int  # ... to this many significant figures (the check allows half a unit of the last one)
    tiny_config: dict[str, Any]  # the embedded tiny checkpoint's (vocabulary and special ids come from its tokenizer)
    tiny_pad_token: bool  # whether the tiny checkpoint's tokenizer has a pad token, as the real one does
    cache_bytes: Callable[[Any, int, torch.dtype, int], int] | None = None  # (config, context, dtype, batch)
    layers: dict[str, Layer] = field(default_factory=dict)  # every kind of layer it has, each with its reference
    known: tuple[Known, ...] = ()  # where transformers' releases differ from what the checks hold
    # config fields holding a block boundary the computation changes at (a conv window, an SSD chunk, a rotary
    # scaling threshold; "a.b" for a field of a dict field): decoding is checked on both sides of each
    boundaries: tuple[str, ...] = ()

    def boundary_lengths(self, config) -> list[int]:
        """The values of ``boundaries`` in a model's configuration (those it has), ascending."""
        found = set()
        for path in self.boundaries:
            head, _, key = path.partition(".")
            value = getattr(config, head, None)
            if key:
                value = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                found.add(value)
        return sorted(found)
    kernels: Kernels | None = None
    suite_graph: bool = False  # the suite's CUDA graph of the one-token step (ssmbench.graphs) supports it
    native: Any = None  # ssmbench.native.NativeMap: how mamba-ssm's own model takes this one's weights
    min_transformers: str | None = None  # the first transformers release that has it (older ones skip it)
    # releases that have it but cannot run it at all (every check would fail on the same upstream bug):
    # (version specifier, why -- the releases seen and the upstream issue); its checks skip there, saying why
    unrunnable: tuple[tuple[str, str], ...] = ()
    # rewrites the tiny checkpoint's saved config.json (as a dict, in place) so that every release from
    # min_transformers reads it, where ssmbench.tiny.make_portable's general rewrites are not enough
    portable: Callable[[dict], None] | None = None

    def unsupported(self) -> str | None:
        """Why the installed transformers cannot run this architecture (None: it can)."""
        from packaging.version import Version

        from ..compat import TRANSFORMERS_VERSION

        if self.min_transformers and TRANSFORMERS_VERSION < Version(self.min_transformers):
            return f"transformers {TRANSFORMERS_VERSION} has no {self.model_type} (added in {self.min_transformers})"
        from packaging.specifiers import SpecifierSet

        for releases, why in self.unrunnable:
            if TRANSFORMERS_VERSION in SpecifierSet(releases, prereleases=True):
                return f"transformers {TRANSFORMERS_VERSION} cannot run {self.model_type}: {why}"
        return None

    @property
    def tiny_path(self) -> Path:
        return TINY_DIR / self.key

    @property
    def env_var(self) -> str:
        return f"SSMBENCH_PATH_{self.key.upper()}"


def attention_cache_bytes(config, context: int, dtype: torch.dtype, batch: int = 1, layers: int | None = None) -> int:
    """K and V for every token: ``2 x layers x kv_heads x head_dim`` values per token and sequence (``layers``:
    the attention layers, all of them unless given)."""
    elem = torch.empty((), dtype=dtype).element_size()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    layers = config.num_hidden_layers if layers is None else layers
    return batch * 2 * layers * heads * head_dim * context * elem


# transformers 5.13's names of layer kinds -> the names releases before it read (5.13 on map them back as they load)
LEGACY_LAYER_NAMES = {"linear_attention": "mamba", "full_attention": "attention"}


def mamba2_layer_bytes(heads: int, head_dim: int, groups: int, state_size: int, conv_kernel: int,
                       dtype: torch.dtype) -> int:
    """One Mamba-2 mixer's fixed state for one sequence: the conv window over ``heads x head_dim + 2 x groups x
    state_size`` channels and a [head_dim x state_size] SSM state per head (``ssm_layer_bytes``)."""
    inner = heads * head_dim
    return ssm_layer_bytes(inner + 2 * groups * state_size, conv_kernel, inner * state_size, dtype)


def ssm_layer_bytes(conv_channels: int, conv_kernel: int, state_values: int, dtype: torch.dtype) -> int:
    """One SSM layer's fixed state for one sequence, whatever the context: the conv window over its channels in
    the model dtype, and the SSM state (float32 on transformers 5.x, see compat)."""
    from ..compat import mamba_ssm_state_dtype

    elem = torch.empty((), dtype=dtype).element_size()
    state_elem = torch.empty((), dtype=mamba_ssm_state_dtype(dtype)).element_size()
    return conv_channels * conv_kernel * elem + state_values * state_elem
