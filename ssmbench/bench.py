"""One benchmark point: inputs for a context length, a timed generate() with per-token timestamps, and the
derived figures (time to first token, time per output token, memory, roofline floor, MBU/MFU, energy)."""

from __future__ import annotations

import statistics
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import compat, devices, impl
from .cache import expected_cache_bytes, tensor_bytes
from .graphs import GraphedMambaDecoder
from .loading import LoadedModel
from .measure import EnergyMeter, Nvml, StepClock, memory_region_end, memory_region_start, synchronize


def prompt_ids(lm: LoadedModel, context: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """``batch`` x ``context`` seeded token ids from the tokenizer's ordinary vocabulary (no special ids, so
    no early end of sequence in the prompt)."""
    special = set(lm.tokenizer.all_special_ids)
    high = min(lm.tokenizer.vocab_size, lm.model.config.vocab_size)
    allowed = torch.tensor([i for i in range(high) if i not in special])
    gen = torch.Generator().manual_seed(seed + context)
    idx = torch.randint(0, len(allowed), (batch, context), generator=gen)
    return allowed[idx].to(lm.device)


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@dataclass
class Runs:
    """What a benchmarked callable collected: per call, the step intervals and the new-token count."""

    intervals: list[list[float]] = field(default_factory=list)
    new_tokens: list[int] = field(default_factory=list)
    cache_bytes: int | None = None  # bytes of the cache generate() returned, last call
    capture_s: float | None = None  # suite CUDA graph: seconds its capture took (inside the first call)

    def measured(self, rounds: int) -> "Runs":
        """Drop warm-up calls: keep the last ``rounds`` (pytest-benchmark disabled makes a single call)."""
        return Runs(self.intervals[-rounds:], self.new_tokens[-rounds:], self.cache_bytes, self.capture_s)

    @property
    def ttft_s(self) -> float:
        return statistics.median(i[0] for i in self.intervals)

    @property
    def total_s(self) -> float:
        return statistics.median(sum(i) for i in self.intervals)

    @property
    def per_token_s(self) -> float | None:
        steps = [s for i in self.intervals for s in i[1:]]
        return statistics.median(steps) if steps else None


BACKEND_KWARGS = {
    "eager": {},
    # A static cache makes transformers compile the decode step (torch.compile, CUDA graphs) on a GPU.
    "compiled": {"cache_implementation": "static"},
}
BACKENDS = ("eager", "compiled", "graphed")
# How each backend decodes, as recorded in a point's ``decode_path``.
TRANSFORMERS_EAGER = "transformers generate(), eager"
TRANSFORMERS_STATIC = "transformers generate(), static cache compiled"
SUITE_GRAPH = "suite CUDA graph of the one-token step"


def decode_path(lm: LoadedModel, backend: str) -> str:
    """What ``backend`` runs for this model: ``compiled`` is transformers' static-cache compile where
    transformers offers it for the model, else (Mamba on 4.x) the suite's CUDA graph; ``graphed`` is the
    suite's graph (Mamba only)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "eager":
        return TRANSFORMERS_EAGER
    if lm.spec.family != "ssm":
        if backend == "graphed":
            raise ValueError(f"{lm.name}: the graphed backend captures Mamba's fixed-size recurrent step; "
                             "for attention models use 'compiled' (transformers' static cache)")
        return TRANSFORMERS_STATIC
    if backend == "compiled" and compat.static_cache_compile_offered(lm.model):
        return TRANSFORMERS_STATIC
    return SUITE_GRAPH


def generate_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs,
                  backend: str = "eager") -> Callable[[], None]:
    """A callable for pytest-benchmark: one greedy decode of exactly ``new_tokens`` tokens, through
    generate() or, for the suite's CUDA graph, through ``graphs.GraphedMambaDecoder``."""
    if decode_path(lm, backend) == SUITE_GRAPH:
        return _graphed_call(lm, ids, new_tokens, runs)
    extra = BACKEND_KWARGS[backend]

    def call() -> None:
        clock = StepClock(lm.device)
        with torch.no_grad():
            clock.start()
            out = lm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, logits_processor=[clock],
                              return_dict_in_generate=True, **extra)
            synchronize(lm.device)
        runs.intervals.append(clock.intervals_s())
        runs.new_tokens.append(out.sequences.shape[1] - ids.shape[1])
        runs.cache_bytes = tensor_bytes(out.past_key_values) if out.past_key_values is not None else None

    return call


_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graphed_decoder(lm: LoadedModel):
    """One decoder per loaded model (its captured graphs are reused across points of the same batch size)."""
    if lm.model not in _DECODERS:
        _DECODERS[lm.model] = GraphedMambaDecoder(lm.model)
    return _DECODERS[lm.model]


def _graphed_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs) -> Callable[[], None]:
    decoder = graphed_decoder(lm)

    def call() -> None:
        clock = StepClock(lm.device)
        clock.start()
        tokens = decoder.generate(ids, new_tokens, on_token=lambda: clock(None, None))
        synchronize(lm.device)
        runs.intervals.append(clock.intervals_s())
        runs.new_tokens.append(tokens.shape[1])
        slot = decoder.slot_for(ids.shape[0])
        runs.cache_bytes = tensor_bytes(slot.cache) if slot else None  # no slot: a 1-token call never decodes
        runs.capture_s = slot.capture_s if slot else None

    return call


@dataclass
class PointContext:
    """Memory and energy around one benchmark, started before and read after pytest-benchmark runs it."""

    lm: LoadedModel
    nvml: Nvml
    energy: EnergyMeter | None = None
    _before: int | None = None

    def __enter__(self) -> "PointContext":
        self._before = memory_region_start(self.lm.device)
        if self.energy:
            self.energy.start()
        return self

    def __exit__(self, *exc) -> None:
        self.memory = memory_region_end(self.lm.device, self._before, self.nvml)
        self.energy_reading = self.energy.stop() if self.energy else (None, 0.0, "not measured")


def point_record(lm: LoadedModel, kind: str, *, context: int, batch: int, new_tokens: int,
                 profile: devices.DeviceProfile, backend: str = "eager") -> dict[str, Any]:
    params = sum(p.numel() for p in lm.model.parameters())
    return {
        "model": lm.name, "arch": lm.spec.arch.key, "family": lm.spec.family, "source": lm.spec.source,
        "kind": kind, "context": context, "batch": batch, "new_tokens": new_tokens, "status": "ok",
        "dtype": str(lm.dtype).replace("torch.", ""), "params": params, "weight_bytes": weight_bytes(lm.model),
        "load_s": lm.load_seconds, "device": profile.name, "backend": backend,
        "decode_path": decode_path(lm, backend),
        "impl": impl.model_implementation(lm.model) if lm.spec.family == "ssm" else "-",
    }


def finish_point(point: dict[str, Any], lm: LoadedModel, all_runs: Runs, rounds: int, ctx: PointContext,
                 profile: devices.DeviceProfile) -> dict[str, Any]:
    """Fill the derived figures of a measured point from every call made (warm-up included: the energy
    window and the first call span it; the timings use the last ``rounds``)."""
    runs, calls = all_runs.measured(rounds), len(all_runs.new_tokens)
    context, batch = point["context"], point["batch"]
    point["median_s"] = runs.total_s
    point["ttft_s"] = runs.ttft_s
    point["decode_s_per_token"] = runs.per_token_s
    point["tokens_per_s"] = batch * point["new_tokens"] / runs.total_s
    point["extra_peak_bytes"] = ctx.memory.extra_peak
    point["peak_allocated_bytes"] = ctx.memory.peak_allocated
    point["nvml_process_bytes"] = ctx.memory.nvml_process
    point["host_available_bytes"] = ctx.memory.host_available
    # The returned cache holds context + new_tokens - 1 positions (the last token is never fed back).
    point["cache_bytes_formula"] = expected_cache_bytes(lm.model.config, lm.spec.family,
                                                        context + point["new_tokens"] - 1, lm.dtype, batch=batch)
    point["cache_bytes"] = runs.cache_bytes
    read = devices.decode_read_bytes(point)
    point["floor_s"] = devices.decode_floor_s(read, 0, profile)
    point["mbu"] = devices.mbu(read, 0, runs.per_token_s, profile) if runs.per_token_s else None
    point["prefill_floor_s"] = devices.prefill_floor_s(point["params"], batch * context, profile)
    point["mfu"] = devices.mfu(point["params"], batch * context, runs.ttft_s, profile)
    joules, window, why = ctx.energy_reading
    point["energy_window_s"] = window
    point["joules_per_token"] = None if joules is None else joules / (batch * point["new_tokens"] * calls)
    point["energy_note"] = why
    # The first call (the warm-up) includes compilation: reported on its own, never in per-token figures.
    point["first_call_s"] = sum(all_runs.intervals[0])
    point["compile_s"] = max(0.0, point["first_call_s"] - point["median_s"]) if calls > 1 else None
    point["capture_s"] = all_runs.capture_s
    point["new_tokens_seen"] = sorted(set(all_runs.new_tokens))
    return point
