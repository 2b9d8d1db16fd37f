"""A benchmark point, typed: what was measured (identity), and its timing, memory, roofline, energy and
calibration parts. JSON in and out (``to_json`` / ``from_json``); a misspelt field is an error, not an "n/a".

The results file carries ``SCHEMA_VERSION``. Version 2 nests the parts (``{"model": ..., "timing": {...}}``);
version 1 (the first files, flat) still reads. pytest-benchmark's ``extra_info`` keeps the flat form
(``flat()``), so stored baselines and the memory gate read the same keys as before."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 2
# How transformers' own generate() decodes, as a point's ``decode_path`` records it (ssmbench.bench sets it; the
# results read it without importing torch).
TRANSFORMERS_EAGER = "transformers generate(), eager"
TRANSFORMERS_STATIC = "transformers generate(), static cache compiled"
SUITE_GRAPH = "suite CUDA graph of the one-token step"  # ssmbench.backends.graphed
NATIVE = "mamba_ssm MambaLMHeadModel, its CUDA graph (generate(cg=True)'s)"  # ssmbench.backends.native


@dataclass
class Timing:
    median_s: float | None = None  # median whole call
    ttft_s: float | None = None  # time to first token (median); a prefill point's is its whole call
    decode_s_per_token: float | None = None  # median step after the first token (the steady step)
    tpot_s: float | None = None  # mean step after the first token, (call - first token) / (tokens - 1): median
    #                              over rounds; above the steady step by what the first decode steps cost more
    tokens_per_s: float | None = None  # batch x new tokens over the whole call
    decode_tokens_per_s: float | None = None  # batch x (new tokens - 1) over the call after the first token
    rounds: int | None = None
    round_values_s: list[float] = field(default_factory=list)  # each round's headline figure
    decode_round_values_s: list[float] | None = None  # throughput: each round's call after its own first token
    rounds_spread: float | None = None  # (max - min) / median of round_values_s
    ci95: float | None = None  # 95 % interval of the mean, relative
    step_spread: float | None = None  # interquartile range / median of the steps
    first_call_s: float | None = None  # the warm-up call (compilation or capture included)
    compile_s: float | None = None
    settle_calls: int | None = None  # compiled: calls (the first included) until two in a row recorded no CUDA graph
    warmup_calls: int | None = None  # other points: warm-up calls before the rounds (WARMUP_S of them, 1 to 10)
    graphs_settled: bool | None = None  # False: still recording when the settle cap was hit
    graph_clears_in_rounds: int | None = None  # cuBLAS workspace clears (graph recordings) during the rounds
    capture_s: float | None = None
    new_tokens_seen: list[int] = field(default_factory=list)
    unwarmed: bool | None = None  # one unwarmed call: timing off (--benchmark-disable, or xdist)
    pilot_rounds: int | None = None  # --bench-rounds auto
    target: float | None = None
    target_met: bool | None = None
    # where the point's own time went, from its timestamps (seconds): release (earlier points' state), warmup
    # (compilation, capture, settling included), pilot, rounds, finish (figures), calibration
    phases_s: dict[str, float] | None = None


@dataclass
class Memory:
    resident_allocated_bytes: int | None = None  # when the point began, earlier leftovers released
    resident_reserved_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    extra_peak_bytes: int | None = None  # median over rounds of (round peak - round start)
    extra_peak_rounds_bytes: list[int] = field(default_factory=list)
    backend_held_bytes: int | None = None  # allocated at the first measured round over the point's start
    round_drift_bytes: int | None = None  # last measured round's start over the first's
    nvml_process_bytes: int | None = None
    host_available_bytes: int | None = None
    cache_bytes: int | None = None  # of the cache generate() returned
    cache_bytes_formula: int | None = None

    @property
    def over_weights_bytes(self) -> int | None:
        """What a call needs on top of the weights: what the backend holds between calls (a graph's static state
        and cache) plus the call's extra peak -- comparable across backends, where the extra peak alone leaves a
        graph's state out."""
        if self.extra_peak_bytes is None or self.backend_held_bytes is None:
            return None
        return self.extra_peak_bytes + max(0, self.backend_held_bytes)


@dataclass
class Roofline:
    floor_s: float | None = None  # decode: (weights + cache) / peak bandwidth
    mbu: float | None = None
    prefill_floor_s: float | None = None
    mfu: float | None = None


@dataclass
class Energy:
    # decode points: the decode's own window per token; throughput points: each whole call's (prefill included)
    # per generated token, end to end
    joules_per_token: float | None = None
    energy_window_s: float | None = None
    energy_note: str = ""
    prefill_joules_per_prompt_token: float | None = None
    prefill_energy_window_s: float | None = None
    prefill_energy_note: str = ""


@dataclass
class Calibration:
    checks: list[dict[str, Any]] = field(default_factory=list)  # figure, suite, plain, diff
    tolerance: float | None = None
    failures: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # over the tolerance, within the host's noise


PARTS = {"timing": Timing, "memory": Memory, "roofline": Roofline, "energy": Energy}
_FIELDS = {name: {f.name for f in fields(kind)} for name, kind in PARTS.items()}
# Version-1 (flat) names of the calibration part's fields.
_FLAT_CALIBRATION = {"calibration": "checks", "calibration_tolerance": "tolerance",
                     "calibration_failures": "failures"}


@dataclass
class Point:
    model: str
    kind: str  # quickstart | prefill | decode | throughput
    context: int
    batch: int
    new_tokens: int
    arch: str = ""
    family: str = ""
    source: str = ""
    status: str = "ok"  # ok | oom
    error: str | None = None
    dtype: str = ""
    params: int = 0
    size_params: float = 0.0  # the published parameter count of the model it stands for: pairs it by size
    weight_bytes: int = 0
    load_s: float | None = None
    device: str = ""
    backend: str = "eager"
    decode_path: str = ""
    impl: str = "-"
    trained_context: int | None = None  # the config's max_position_embeddings, where it has one
    timing: Timing = field(default_factory=Timing)
    memory: Memory = field(default_factory=Memory)
    roofline: Roofline = field(default_factory=Roofline)
    energy: Energy = field(default_factory=Energy)
    calibration: Calibration | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timing_only(self) -> bool:
        """Past the context the model was trained for: the outputs mean nothing, the timing and memory do."""
        return bool(self.trained_context) and self.context > self.trained_context

    @property
    def calibration_failures(self) -> list[str]:
        return self.calibration.failures if self.calibration else []

    def figure(self, name: str) -> Any:
        """A measured figure by its field name, from whichever part holds it (``"ttft_s"``, ``"cache_bytes"``);
        a name no part has is an error."""
        for part in PARTS:
            if name in _FIELDS[part]:
                return getattr(getattr(self, part), name)
        raise KeyError(f"no figure {name!r} in a point; figures: {', '.join(sorted(set().union(*_FIELDS.values())))}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """One level, version-1 names (pytest-benchmark's extra_info)."""
        out = {k: v for k, v in asdict(self).items() if k not in PARTS and k != "calibration"}
        for name in PARTS:
            out.update(asdict(getattr(self, name)))
        if self.calibration:
            out.update({flat: getattr(self.calibration, attr) for flat, attr in _FLAT_CALIBRATION.items()})
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Point":
        """A point from either schema; an unknown field raises ValueError naming it."""
        data = dict(data)
        if not any(isinstance(data.get(name), dict) for name in PARTS):  # version 1: flat
            data = _nest(data)
        parts = {name: kind(**_known(kind, data.pop(name, None) or {}, name)) for name, kind in PARTS.items()}
        calibration = data.pop("calibration", None)
        calibration = Calibration(**_known(Calibration, calibration, "calibration")) if calibration else None
        point = cls(**_known(cls, data, "point"), **parts, calibration=calibration)
        point.validate()
        return point

    def validate(self) -> None:
        """Every field of the type it declares, every figure a finite number and none negative that cannot be
        (a file's NaN, a negative time or a string context would flip a verdict silently): ValueError naming the
        field otherwise."""
        for obj, where in ((self, ""), *((getattr(self, n), f"{n}.") for n in PARTS)):
            for f in fields(obj):
                if f.name in PARTS or f.name == "calibration":
                    continue
                _check(f"{where}{f.name}", getattr(obj, f.name), str(f.type), f.name in MAY_BE_NEGATIVE)
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}: not one of {', '.join(KINDS)}")
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: not one of {', '.join(STATUSES)}")
        for name in ("context", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)!r}: not a positive integer")


KINDS = ("quickstart", "prefill", "decode", "throughput")
STATUSES = ("ok", "oom")
# Differences of two readings: below zero when memory was freed between them.
MAY_BE_NEGATIVE = {"backend_held_bytes", "round_drift_bytes"}


def _check(name: str, value: Any, annotation: str, negative_ok: bool) -> None:
    """``value`` against a field's annotation ("float | None", "list[int]", "str", ...)."""
    optional = annotation.endswith("| None")
    base = annotation.replace("| None", "").strip()
    if value is None:
        if optional:
            return
        raise ValueError(f"{name}: missing (null)")
    if base.startswith("list["):
        if not isinstance(value, list):
            raise ValueError(f"{name}: {value!r} is not a list")
        inner = base[5:-1]
        for i, item in enumerate(value):
            if inner == "dict[str, Any]":
                if not isinstance(item, dict):
                    raise ValueError(f"{name}[{i}]: {item!r} is not an object")
            else:
                _check(f"{name}[{i}]", item, inner, negative_ok)
        return
    if base.startswith("dict[str, "):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{name}: {value!r} is not an object with string keys")
        for key, item in value.items():
            _check(f"{name}.{key}", item, base[10:-1], negative_ok)
        return
    if base == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name}: {value!r} is not a string")
        return
    if base == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: {value!r} is not true or false")
        return
    if base in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (base == "int" and
                                                                              not isinstance(value, int)):
            raise ValueError(f"{name}: {value!r} is not {'an integer' if base == 'int' else 'a number'}")
        if not math.isfinite(value):
            raise ValueError(f"{name}: {value!r} is not a finite number")
        if value < 0 and not negative_ok:
            raise ValueError(f"{name}: {value!r} is negative")


def _known(kind, values: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in fields(kind)} - set(PARTS) - {"calibration"}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {where} field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return values


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {name: {} for name in PARTS}
    owner = {f.name: name for name, kind in PARTS.items() for f in fields(kind)}
    calibration: dict[str, Any] = {}
    for key, value in flat.items():
        if key in owner:
            nested[owner[key]][key] = value
        elif key in _FLAT_CALIBRATION:
            calibration[_FLAT_CALIBRATION[key]] = value
        elif key in ("joules_per_token",):
            nested["energy"][key] = value
        else:
            nested[key] = value
    if calibration:
        nested["calibration"] = calibration
    return nested
