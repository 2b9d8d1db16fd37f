"""One benchmark point: inputs for a context length, a timed generate() with per-token timestamps, and the
derived figures (time to first token, time per output token, memory, roofline floor, MBU/MFU, energy)."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import backends, devices, impl
from .backends import decode_path
from .cache import expected_cache_bytes
from .loading import LoadedModel
from .measure import Nvml, energy_per_unit, host_available_bytes, resident_bytes, synchronize
from .point import Point
from .runs import Runs, ci95, relative_iqr, relative_range


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


def release_backend_state(lm: LoadedModel, backend: str) -> None:
    """Before a point: every backend frees what earlier points left on this model (the suite's captured graphs
    and their static state, mamba-ssm's model, and -- when this point is not a compiled one -- torch.compile's
    compiled code and CUDA-graph pools), transformers' reusable static cache (``model._cache``, 4.x) and the
    length it sizes new ones to (5.x) go, and cuBLAS's workspaces are cleared; then garbage is collected and the
    cached blocks returned, so the point starts from the weights alone whatever ran before it."""
    following = backends.get(backend)
    if getattr(lm.model, "_cache", None) is not None:  # 4.x: the static cache generate() reuses
        lm.model._cache = None
    # 5.x sizes each new static cache to the longest any earlier call asked for: a long point, or calibration's
    # longer calls, would inflate every later compiled point's cache, memory and time.
    lm.model.__dict__.pop("_previous_max_cache_length", None)
    for each in backends.BACKENDS.values():
        each.release(lm, following)
    keep = following.keeps_workspaces(lm)
    gc.collect()
    if lm.device.type == "cuda":
        # cuBLAS keeps a workspace per handle and stream in the caching allocator -- one for every stream a matmul
        # ran on, a graph capture's side stream included -- until torch.compile's graph trees clear them all: on
        # the H200, 96 MiB more (after a graphed point) or less (after a compiled one) resident at a point's
        # start. Cleared, every point starts from the weights alone, and its warm-up allocates what it needs;
        # not between compiled points, whose captured graphs are kept on purpose.
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None and not keep:
            synchronize(lm.device)
            clear_workspaces()
        torch.cuda.empty_cache()
    if following.unavailable(lm) is None:
        following.prepare(lm)


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
        params=sum(p.numel() for p in lm.model.parameters()), size_params=lm.spec.arch.published_params,
        weight_bytes=weight_bytes(lm.model),
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
