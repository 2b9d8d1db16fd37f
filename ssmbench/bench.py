"""One benchmark point: inputs for a context length, a timed generate() with per-token timestamps, and the
derived figures (time to first token, time per output token, memory, roofline floor, MBU/MFU, energy)."""

from __future__ import annotations

import gc
import math
import statistics
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from . import compat, devices, impl, native
from .cache import expected_cache_bytes, tensor_bytes
from .graphs import GraphedMambaDecoder
from .loading import LoadedModel
from .measure import (
    EnergyWindows,
    Nvml,
    StepClock,
    energy_per_unit,
    host_available_bytes,
    resident_bytes,
    round_peak,
    round_start,
    synchronize,
)
from .point import TRANSFORMERS_EAGER, TRANSFORMERS_STATIC, Point


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
    """What a benchmarked callable collected, per call (warm-up and pilot calls included): the step intervals,
    the new-token count, the allocator's state around it and its energy windows."""

    intervals: list[list[float]] = field(default_factory=list)
    new_tokens: list[int] = field(default_factory=list)
    round_start_bytes: list[int | None] = field(default_factory=list)  # allocated when the round began
    peaks: list[int | None] = field(default_factory=list)  # the allocator's peak during the round
    energy: list[EnergyWindows | None] = field(default_factory=list)
    cache_bytes: int | None = None  # bytes of the cache generate() returned, last call
    capture_s: float | None = None  # suite CUDA graph: seconds its capture took (inside the first call)
    calls: list[float] = field(default_factory=list)  # each call whole, start to end (StepClock.call_s)

    def setup(self, device: torch.device) -> Callable[[], None]:
        """pytest-benchmark's ``setup`` (run before every round, outside the timing): the allocator's peak
        reset and the allocation the round starts from recorded. No garbage collection here: a full collection
        before each round is not what a user's back-to-back calls see (on the H200 it came with Mamba's
        prefill at 512 tokens timing 96 ms against 65 ms plainly); the point's start collects once."""
        def setup() -> None:
            self.round_start_bytes.append(round_start(device))
        return setup

    def record(self, clock: StepClock, new_tokens: int, device: torch.device) -> None:
        clock.finish()
        self.intervals.append(clock.intervals_s())
        self.calls.append(clock.call_s())
        self.new_tokens.append(new_tokens)
        self.peaks.append(round_peak(device))
        self.energy.append(clock.energy_windows())

    def measured(self, rounds: int) -> "Runs":
        """Drop warm-up and pilot calls: keep the last ``rounds`` (pytest-benchmark disabled makes one call)."""
        return Runs(self.intervals[-rounds:], self.new_tokens[-rounds:], self.round_start_bytes[-rounds:],
                    self.peaks[-rounds:], self.energy[-rounds:], self.cache_bytes, self.capture_s,
                    self.calls[-rounds:])

    @property
    def ttft_s(self) -> float:
        return statistics.median(i[0] for i in self.intervals)

    @property
    def total_s(self) -> float:
        """The median whole call (generate()'s work after the last token included)."""
        return statistics.median(self.calls)

    @property
    def after_first_s(self) -> list[float]:
        """Each call's time after its own first token (the call minus its own time to first token)."""
        return [c - i[0] for c, i in zip(self.calls, self.intervals, strict=True) if i]

    @property
    def decode_s(self) -> float | None:
        """The median over calls of ``after_first_s`` (a median call minus a median first token can mix rounds,
        and at batch 256 x 2048 tokens, where the prefill is 14 of 15 s, a 1 % prefill jitter between rounds
        moves the difference by 15 %)."""
        after = self.after_first_s
        return statistics.median(after) if after else None

    @property
    def steps(self) -> list[float]:
        return [s for i in self.intervals for s in i[1:]]

    @property
    def per_token_s(self) -> float | None:
        return statistics.median(self.steps) if self.steps else None

    def per_round(self, kind: str) -> list[float]:
        """Each round's value of the point's headline figure: the median step for decode, the whole call
        otherwise (for prefill, generate(max_new_tokens=1): its time to first token as a wall clock sees it)."""
        if kind == "decode" and all(len(i) > 1 for i in self.intervals):
            return [statistics.median(i[1:]) for i in self.intervals]
        return list(self.calls)


def relative_range(values: list[float]) -> float | None:
    """(max - min) / median: how far the rounds of a point were apart; None for fewer than 2."""
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def relative_iqr(values: list[float], minimum: int = 4) -> float | None:
    """Interquartile range / median (per-step times: robust to the odd slow step); None for fewer than
    ``minimum`` values."""
    if len(values) < minimum:
        return None
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / q2)


_T95 = (12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)


def _t95(n: int) -> float:
    """Student's t for a two-sided 95 % interval from ``n`` samples (tabled to 16, approximated beyond)."""
    return _T95[n - 2] if n - 2 < len(_T95) else 1.96 + 2.4 / (n - 1)


def ci95(values: list[float]) -> float | None:
    """Half-width of the 95 % confidence interval of the mean, relative to the mean (Student's t)."""
    n = len(values)
    if n < 2:
        return None
    return _t95(n) * statistics.stdev(values) / math.sqrt(n) / statistics.mean(values)


def rounds_for_precision(pilot: list[float], precision: float, round_s: float, max_time_s: float,
                         min_rounds: int = 3, max_rounds: int = 200) -> int:
    """pytest-benchmark chooses rounds from a time budget after a calibration run; this chooses them from a
    target too: the fewest rounds whose 95 % interval of the mean the pilot's spread puts within
    +-``precision``, at most what ``max_time_s`` allows (and never below ``min_rounds``)."""
    mean, sd = statistics.mean(pilot), statistics.stdev(pilot) if len(pilot) > 1 else 0.0
    n = min_rounds
    while n < max_rounds:
        if _t95(n) * sd / math.sqrt(n) <= precision * mean:
            break
        n += 1
    by_time = int(max_time_s // round_s) if round_s > 0 else max_rounds
    return max(min_rounds, min(n, by_time))


BACKEND_KWARGS = {
    "eager": {},
    # A static cache makes transformers compile the decode step (torch.compile, CUDA graphs) on a GPU.
    "compiled": {"cache_implementation": "static"},
}
from .names import BACKENDS  # noqa: E402,F401  (re-exported)

# How each backend decodes, as recorded in a point's ``decode_path`` (transformers' two: ssmbench.point).
SUITE_GRAPH = "suite CUDA graph of the one-token step"
NATIVE = native.NATIVE  # mamba-ssm's own model on the same weights, its CUDA graph


def decode_path(lm: LoadedModel, backend: str) -> str:
    """What ``backend`` runs for this model: ``compiled`` is transformers' static-cache compile where
    transformers offers it for the model, else (Mamba on 4.x) the suite's CUDA graph; ``graphed`` is the
    suite's graph, for the architectures it supports (``Arch.suite_graph``: Mamba); ``native`` is mamba-ssm's
    own model on the same weights (``ssmbench.native``), where mamba-ssm is importable and the architecture has
    a mapping."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "eager":
        return TRANSFORMERS_EAGER
    if backend == "native":
        why = native.unavailable(lm.spec.arch, lm.device)
        if why:
            raise ValueError(f"{lm.name}: {why}")
        return NATIVE
    graph = lm.spec.arch.suite_graph
    if backend == "graphed":
        if not graph:
            raise ValueError(f"{lm.name}: the graphed backend captures Mamba's fixed-size recurrent step; "
                             f"for {lm.spec.arch.key} use 'compiled' (transformers' static cache)")
        return SUITE_GRAPH
    if compat.static_cache_compile_offered(lm.model):
        return TRANSFORMERS_STATIC
    if graph:
        return SUITE_GRAPH
    # 4.x ignores cache_implementation="static" for such a class (with a warning): a "compiled" point would be
    # an eager one under another name.
    raise ValueError(f"{lm.name}: transformers {compat.TRANSFORMERS_VERSION} offers no compiled decode for "
                     f"{lm.spec.arch.model_type} (its static cache is ignored) and the suite's graph does not "
                     "support it")


def generate_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs,
                  backend: str = "eager", nvml: Nvml | None = None, energy: bool | str = True) -> Callable[[], None]:
    """A callable for pytest-benchmark: one greedy decode of exactly ``new_tokens`` tokens, through
    generate() or, for the suite's CUDA graph, through ``graphs.GraphedMambaDecoder``. ``energy``: as
    ``StepClock``'s (``"call"`` for throughput: its end-to-end time would hold a read at the first token)."""
    path = decode_path(lm, backend)
    if path == SUITE_GRAPH:
        return _graphed_call(lm, ids, new_tokens, runs, nvml, energy)
    if path == NATIVE:
        return _native_call(lm, ids, new_tokens, runs, nvml, energy)
    extra = BACKEND_KWARGS[backend]

    def call() -> None:
        clock = StepClock(lm.device, nvml, new_tokens, energy)
        with torch.no_grad():
            clock.start()
            out = lm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, logits_processor=[clock],
                              return_dict_in_generate=True, **extra)
            synchronize(lm.device)
        runs.record(clock, out.sequences.shape[1] - ids.shape[1], lm.device)
        runs.cache_bytes = tensor_bytes(out.past_key_values) if out.past_key_values is not None else None

    return call


_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graphed_decoder(lm: LoadedModel):
    """One decoder per loaded model: its captured graphs serve every call of a point (and of calibration after
    it); ``release_backend_state`` drops it before the next point."""
    if lm.model not in _DECODERS:
        _DECODERS[lm.model] = GraphedMambaDecoder(lm.model)
    return _DECODERS[lm.model]


def release_backend_state(lm: LoadedModel, backend: str) -> None:
    """Before a point: free what earlier points left on this model -- transformers' reusable static cache
    (``model._cache``, 4.x) and the length it sizes new ones to (5.x), the suite's captured graphs and their
    static state, and, when this point is not a compiled one, torch.compile's compiled code and CUDA-graph pools
    -- and cuBLAS's workspaces, then collect garbage and return the cached blocks, so the point starts from the
    weights alone whatever ran before it."""
    if getattr(lm.model, "_cache", None) is not None:  # 4.x: the static cache generate() reuses
        lm.model._cache = None
    # 5.x sizes each new static cache to the longest any earlier call asked for: a long point, or calibration's
    # longer calls, would inflate every later compiled point's cache, memory and time.
    lm.model.__dict__.pop("_previous_max_cache_length", None)
    _DECODERS.pop(lm.model, None)
    native.drop(lm.model)
    keep_compiled = backend == "compiled" and _COMPILED.get(lm.model, False)
    if backend != "compiled" and _COMPILED.pop(lm.model, False):
        import torch._dynamo as dynamo

        dynamo.reset()
    gc.collect()
    if lm.device.type == "cuda":
        # cuBLAS keeps a workspace per handle and stream in the caching allocator -- one for every stream a matmul
        # ran on, a graph capture's side stream included -- until torch.compile's graph trees clear them all: on
        # the H200, 96 MiB more (after a graphed point) or less (after a compiled one) resident at a point's
        # start. Cleared, every point starts from the weights alone, and its warm-up allocates what it needs;
        # not between compiled points, whose captured graphs are kept on purpose.
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None and not keep_compiled:
            synchronize(lm.device)
            clear_workspaces()
        torch.cuda.empty_cache()
    if backend == "compiled" and decode_path(lm, backend) == TRANSFORMERS_STATIC:
        _COMPILED[lm.model] = True


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # models whose decode torch.compile holds


class WorkspaceClears:
    """Counts cuBLAS workspace clears (``torch._C._cuda_clearCublasWorkspaces``) while it is entered.
    torch.compile's CUDA graph trees clear the workspaces around every warm-up and recording of a graph, and the
    next call re-allocates them: on the H200, phi-2's compiled decode at 512 tokens peaked 253 MiB over its start
    in the first four calls after compilation and 220 MiB from then on. A call that clears has not settled."""

    def __init__(self) -> None:
        self.count = 0
        self._original = None

    def __enter__(self) -> "WorkspaceClears":
        self._original = original = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if original is not None:
            def counting(*args, **kwargs):
                self.count += 1
                return original(*args, **kwargs)
            torch._C._cuda_clearCublasWorkspaces = counting
        return self

    @property
    def counting(self) -> bool:
        return self._original is not None

    def __exit__(self, *exc) -> None:
        if self._original is not None:
            torch._C._cuda_clearCublasWorkspaces = self._original


SETTLE_MAX_CALLS = 20  # Mamba's compiled decode at 32768 on the H200 cleared workspaces in its first 11 calls
SETTLE_MAX_S = 90.0
# Calls in a row that clear nothing before the rounds start. One quiet call proved not enough (an observation, no
# mechanism identified: torch's graph trees clear around warm-ups and recordings alike): on the H200, Mamba's
# compiled decode at 131072 tokens as a process's first point had one quiet call, then cleared 4 workspaces in its
# rounds -- 6.1 ms/token against 5.3 ms by the suite's own call and by plain generate() right after.
SETTLE_QUIET_CALLS = 2


def settle_graphs(call: Callable[[], None], setup: Callable[[], None], clears: WorkspaceClears,
                  max_calls: int = SETTLE_MAX_CALLS, max_s: float = SETTLE_MAX_S,
                  quiet_calls: int = SETTLE_QUIET_CALLS) -> tuple[int, bool | None]:
    """A compiled point's warm-up: calls (the first compiles) until ``quiet_calls`` in a row warm up or record
    no CUDA graph -- clear no cuBLAS workspace -- so the rounds after them measure what every later call costs,
    not the graph trees' first calls (their recordings, and the workspaces re-allocated after them). At most
    ``max_calls`` calls or ``max_s`` seconds after the first (compiling) one. Returns (calls made, settled);
    settled is None where nothing can be counted (no workspace hook in this torch): one call, the plain
    warm-up."""
    start, calls, quiet = None, 0, 0
    while True:
        before = clears.count
        setup()
        call()
        calls += 1
        if not clears.counting:
            return calls, None
        quiet = quiet + 1 if clears.count == before else 0
        if quiet >= quiet_calls:
            return calls, True
        start = start if start is not None else time.perf_counter()
        if calls >= max_calls or time.perf_counter() - start > max_s:
            return calls, False


def _decoder_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs, decoder: Any,
                  state: Callable[[], None], nvml: Nvml | None = None, energy: bool | str = True) -> Callable[[], None]:
    """A benchmarked call through a decoder outside generate() (the suite's graph, mamba-ssm's native one):
    ``decoder.generate(ids, n, on_token)`` timed by the same StepClock; ``state()`` then records what the
    decoder keeps (cache bytes, capture time) in ``runs``."""
    def call() -> None:
        clock = StepClock(lm.device, nvml, new_tokens, energy)
        clock.start()
        tokens = decoder.generate(ids, new_tokens, on_token=lambda: clock(None, None))
        synchronize(lm.device)
        runs.record(clock, tokens.shape[1], lm.device)
        state()

    return call


def _graphed_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs,
                  nvml: Nvml | None = None, energy: bool | str = True) -> Callable[[], None]:
    decoder = graphed_decoder(lm)

    def state() -> None:
        slot = decoder.slot_for(ids.shape[0])
        runs.cache_bytes = tensor_bytes(slot.cache) if slot else None  # no slot: a 1-token call never decodes
        runs.capture_s = slot.capture_s if slot else None

    return _decoder_call(lm, ids, new_tokens, runs, decoder, state, nvml, energy)


def _native_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, runs: Runs,
                 nvml: Nvml | None = None, energy: bool | str = True) -> Callable[[], None]:
    decoder = native.native_decoder(lm)

    def state() -> None:
        runs.cache_bytes = tensor_bytes(decoder.state_tensors()) or None

    return _decoder_call(lm, ids, new_tokens, runs, decoder, state, nvml, energy)


@dataclass
class PointContext:
    """What surrounds one benchmark: the allocator's state when the point started (after the release of
    earlier points' leftovers), and NVML's and the host's memory when it ended."""

    lm: LoadedModel
    nvml: Nvml

    def __enter__(self) -> "PointContext":
        self.resident_allocated, self.resident_reserved = resident_bytes(self.lm.device)
        return self

    def __exit__(self, *exc) -> None:
        self.nvml_process = self.nvml.process_memory() if self.lm.device.type == "cuda" else None
        self.host_available = host_available_bytes()


def point_record(lm: LoadedModel, kind: str, *, context: int, batch: int, new_tokens: int,
                 profile: devices.DeviceProfile, backend: str = "eager") -> Point:
    """What a point measures (its identity), before anything is measured."""
    return Point(
        model=lm.name, kind=kind, context=context, batch=batch, new_tokens=new_tokens, arch=lm.spec.arch.key,
        family=lm.spec.family, source=lm.spec.source, dtype=str(lm.dtype).replace("torch.", ""),
        params=sum(p.numel() for p in lm.model.parameters()), weight_bytes=weight_bytes(lm.model),
        load_s=lm.load_seconds, device=profile.name, backend=backend, decode_path=decode_path(lm, backend),
        impl=impl.model_implementation(lm.model, lm.spec.arch) if lm.spec.arch.kernels else "-",
        # Past the context the model was trained for, outputs mean nothing: the point is timing and memory only.
        trained_context=getattr(lm.model.config, "max_position_embeddings", None),
    )


def finish_point(point: Point, lm: LoadedModel, all_runs: Runs, rounds: int, ctx: PointContext,
                 profile: devices.DeviceProfile) -> Point:
    """Fill the measured parts of a point from its last ``rounds`` calls (the first call, warm-up and
    compilation, is reported on its own)."""
    runs = all_runs.measured(rounds)
    context, batch, new = point.context, point.batch, point.new_tokens
    per_round = runs.per_round(point.kind)
    t = point.timing
    # A prefill point is generate(max_new_tokens=1): its time to first token is the whole call, a wall clock's
    # figure (timed to the logits processor, phi-2's prefill at 512 tokens came 0.8-1.4 ms, 3-5 %, under plain
    # generate() in three H200 runs); other points time their first token at the logits processor.
    t.rounds, t.median_s = len(runs.intervals), runs.total_s
    t.ttft_s = runs.total_s if point.kind == "prefill" else runs.ttft_s
    t.decode_s_per_token, t.tokens_per_s = runs.per_token_s, batch * new / runs.total_s
    decode_s = runs.decode_s
    if new > 1 and decode_s:
        t.decode_tokens_per_s = batch * (new - 1) / decode_s
    t.round_values_s, t.rounds_spread, t.ci95 = per_round, relative_range(per_round), ci95(per_round)
    if point.kind == "throughput":
        t.decode_round_values_s = runs.after_first_s
    t.step_spread = relative_iqr(runs.steps)
    means = [statistics.mean(i[1:]) for i in runs.intervals if len(i) > 1]
    t.tpot_s = statistics.median(means) if means else None
    t.first_call_s = all_runs.calls[0]
    t.compile_s = max(0.0, t.first_call_s - t.median_s) if len(all_runs.intervals) > 1 else None
    t.capture_s = all_runs.capture_s
    t.new_tokens_seen = sorted(set(all_runs.new_tokens))
    # Memory: each round's peak over what was allocated when that round began, the median of the measured
    # rounds (a one-time allocation in one round is not what every call needs; compiled points start their
    # rounds only once two calls in a row record no new CUDA graph, see settle_graphs) -- what one call needs on top of
    # everything resident: the weights and, for compiled and graphed decoding, the state those keep between
    # calls (its bytes: cache_bytes). What was resident when the point began is recorded too, and how far the
    # rounds' starting allocation moved.
    m, start = point.memory, ctx.resident_allocated
    extra = [p - s for p, s in zip(runs.peaks, runs.round_start_bytes, strict=True) if p is not None and s is not None]
    m.resident_allocated_bytes, m.resident_reserved_bytes = start, ctx.resident_reserved
    m.peak_allocated_bytes = max(runs.peaks) if extra else None
    m.extra_peak_bytes = int(statistics.median(extra)) if extra else None
    m.extra_peak_rounds_bytes = extra
    first, last = runs.round_start_bytes[0], runs.round_start_bytes[-1]
    m.backend_held_bytes = first - start if first is not None and start is not None else None
    m.round_drift_bytes = last - first if first is not None and last is not None else None
    m.nvml_process_bytes, m.host_available_bytes = ctx.nvml_process, ctx.host_available
    # The returned cache holds context + new_tokens - 1 positions (the last token is never fed back).
    m.cache_bytes_formula = expected_cache_bytes(lm.spec.arch, lm.model.config, context + new - 1, lm.dtype,
                                                 batch=batch)
    m.cache_bytes = runs.cache_bytes
    r, read = point.roofline, devices.decode_read_bytes(point)
    r.floor_s = devices.decode_floor_s(read, 0, profile)
    r.mbu = devices.mbu(read, 0, runs.per_token_s, profile) if runs.per_token_s else None
    r.prefill_floor_s = devices.prefill_floor_s(point.params, batch * context, profile)
    r.mfu = devices.mfu(point.params, batch * context, t.ttft_s, profile)
    windows = [w for w in runs.energy if w is not None]
    e, calls = point.energy, len(windows)
    if point.kind == "throughput":
        # Read before and after each call only: the whole call's joules (prefill included) per generated token,
        # end to end as the tokens per second are.
        e.joules_per_token, e.energy_window_s, e.energy_note = energy_per_unit(
            [(w.call_j, w.call_s) for w in windows], batch * new * calls)
        e.prefill_energy_note = "throughput points read the whole call only (no read at the first token)"
        return point
    if new > 1:
        e.joules_per_token, e.energy_window_s, e.energy_note = energy_per_unit(
            [(w.decode_j, w.decode_s) for w in windows], batch * (new - 1) * calls)
    e.prefill_joules_per_prompt_token, e.prefill_energy_window_s, e.prefill_energy_note = energy_per_unit(
        [(w.prefill_j, w.prefill_s) for w in windows], batch * context * calls)
    return point
