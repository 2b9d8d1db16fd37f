"""Measuring one benchmark point end to end, without pytest: release what earlier points left, warm up, run
the rounds through a runner (pytest-benchmark's ``pedantic`` in the suite), derive the figures, calibrate where
asked, store. Failures that are outcomes, not bugs, are typed: ``BackendUnavailable`` (this model or device
cannot run the backend) and ``PointOutOfMemory`` (recorded in the store before it is raised)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import backends, calibrate, devices, results
from .backends import BackendUnavailable
from .bench import (
    PointContext,
    WorkspaceClears,
    finish_point,
    point_record,
    release_backend_state,
    settle_graphs,
)
from .loading import LoadedModel
from .measure import Nvml
from .point import Calibration, Point
from .runs import Runs, rounds_for_precision

# Warm-up before a point's rounds (compiled points settle their CUDA graphs instead): calls until WARMUP_S have
# passed, at least one and at most WARMUP_MAX_CALLS. One call was not enough for short calls: the rounds of the
# first prefill at 512 tokens of each architecture on the H200 (2026-11-29 13:56) came 10-18 % over plain
# generate() right after for four of five models, and tiny models' rounds on a 2-core CPU up to 163 % over (a CI
# failure); long calls (a second or more) still get one.
WARMUP_S = 1.0
WARMUP_MAX_CALLS = 10

GPU_CONTEXTS = "512,1024,2048,4096,8192,16384,32768"
CPU_CONTEXTS = "32,64,128"
PILOT_ROUNDS = 3

# runner(call, setup, rounds, warmup_rounds): runs ``setup`` then ``call`` warmup_rounds + rounds times
Runner = Callable[[Callable[[], None], Callable[[], None], int, int], None]


@dataclass
class BenchSettings:
    contexts: list[int]
    batch_sizes: list[int]
    backends: list[str]
    decode_tokens: int
    rounds: int | None  # None: auto
    profile: devices.DeviceProfile
    impl: str
    store: results.ResultStore
    nvml: Nvml
    target: float = 0.05  # spread target (fraction)
    max_time_s: float = 60.0
    calibrate_contexts: tuple[int, ...] = ()  # empty: no calibration
    calibrate_batches: tuple[int, ...] = ()  # throughput points calibrated at these batch sizes (any prompt)
    calibrate_tolerance: float = 0.05
    calibrate_max_s: float = 30.0  # per point: alternate until the intervals decide or this is spent
    throughput_prompts: list[int] = field(default_factory=lambda: [32])
    throughput_new_tokens: int = 8
    # (model, backend, prompt) -> the batch size that ran out of memory: larger batches are not attempted
    throughput_oom: dict[tuple[str, str, int], int] = field(default_factory=dict)


class PointOutOfMemory(Exception):
    """The point ran out of memory; it is recorded as such in the store (``point``)."""

    def __init__(self, message: str, point: Point):
        super().__init__(message)
        self.point = point


# What the errors that mean "no memory left" say, other than torch.cuda.OutOfMemoryError: the CPU allocator's,
# a CUDA launch or graph instantiation that found none ("CUDA error: out of memory"), cuBLAS's workspace.
_OUT_OF_MEMORY_TEXTS = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory",
                        "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDA out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's out-of-memory error, or another error that says there was no memory left (the CPU allocator's, a
    CUDA launch's, cuBLAS's) -- itself or anywhere in the chain of errors it was raised from or during (torch.compile
    and transformers re-raise with the original as the cause)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
        if isinstance(exc, RuntimeError) and any(t in str(exc) for t in _OUT_OF_MEMORY_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def check_backend(lm: LoadedModel, backend: str) -> None:
    """Raises ``BackendUnavailable`` saying why ``backend`` cannot run this model here."""
    chosen = backends.get(backend)
    chosen.decode_path(lm)
    why = chosen.unavailable(lm)
    if why:
        raise BackendUnavailable(why)


def _harness(kind: str, call: Callable[[], None], setup: Callable[[], None], runs: Runs) -> Callable[[], float]:
    """One more call the way the point's rounds made it (setup, then call): its time to first token for
    prefill (the whole call), its median step for decode, the whole call for throughput -- what calibration
    alternates with the plain call."""
    def once() -> float:
        setup()
        call()
        return runs.calls[-1] if kind in ("prefill", "throughput") else statistics.median(runs.intervals[-1][1:])
    return once


def _after_first(runs: Runs) -> float | None:
    """The last call's time after its own first token (a throughput point's decode-only figure)."""
    return runs.after_first_s[-1] if runs.intervals and runs.intervals[-1] else None


def warm_up(call: Callable[[], None], setup: Callable[[], None]) -> int:
    """Calls (each after its setup) until ``WARMUP_S`` seconds have passed: at least 1, at most
    ``WARMUP_MAX_CALLS``. Returns how many."""
    start, calls = time.perf_counter(), 0
    while calls < 1 or (calls < WARMUP_MAX_CALLS and time.perf_counter() - start < WARMUP_S):
        setup()
        call()
        calls += 1
    return calls


def measure_point(b: BenchSettings, lm: LoadedModel, kind: str, ids: torch.Tensor, new_tokens: int,
                  backend: str, runner: Runner, timing_on: bool = True) -> Point:
    """One greedy generate of exactly ``new_tokens`` tokens from ``ids``: warm-up calls (``warm_up``) then
    ``b.rounds`` rounds (or auto: the warm-up and a pilot, then the rounds the pilot's spread asks for), from the
    weights alone (earlier points' leftovers released), calibrated where ``b`` says. The point is added to
    ``b.store``."""
    batch, context = ids.shape
    began = time.perf_counter()
    check_backend(lm, backend)
    point = point_record(lm, kind, context=context, batch=batch, new_tokens=new_tokens, profile=b.profile,
                         backend=backend)
    release_backend_state(lm, backend)
    runs = Runs()
    energy = "call" if kind == "throughput" else True  # a throughput call's energy read at its ends only
    chosen = backends.get(backend)
    call, setup = chosen.call(lm, ids, new_tokens, runs, b.nvml, energy), runs.setup(lm.device)
    rounds, oom, measured = b.rounds, None, False
    phases = point.timing.phases_s = {"release": round(time.perf_counter() - began, 4)}
    mark = time.perf_counter()

    def lap(name: str) -> None:  # the time since the last lap, as phase ``name``
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(phases.get(name, 0.0) + now - mark, 4)
        mark = now

    try:
        with PointContext(lm, b.nvml) as ctx, WorkspaceClears() as clears:
            if timing_on and chosen.settles(lm):
                # The warm-up of a torch.compile point: until two calls in a row record no new CUDA graph.
                t = point.timing
                t.settle_calls, t.graphs_settled = settle_graphs(call, setup, clears)
            elif timing_on:
                point.timing.warmup_calls = warm_up(call, setup)
            settled_clears = clears.count
            lap("warmup")
            if rounds is None:
                rounds = PILOT_ROUNDS
                if timing_on:
                    for _ in range(PILOT_ROUNDS):
                        setup()
                        call()
                    pilot = runs.measured(PILOT_ROUNDS)
                    rounds = rounds_for_precision(pilot.per_round(kind), b.target, pilot.total_s, b.max_time_s)
                    point.timing.pilot_rounds = PILOT_ROUNDS
                lap("pilot")
            # warmed up above; with timing off pytest-benchmark makes its one call whatever it is told
            runner(call, setup, rounds, 0 if timing_on else 1)
            lap("rounds")
            if point.timing.graphs_settled is not None:  # graphs recorded again during the measured calls
                point.timing.graph_clears_in_rounds = clears.count - settled_clears
        finish_point(point, lm, runs, rounds, ctx, b.profile)
        lap("finish")
        point.timing.unwarmed = not timing_on
        measured = True
        t = point.timing
        if t.pilot_rounds:  # auto: did the rounds the pilot asked for reach the target?
            t.target, t.target_met = b.target, t.ci95 is not None and t.ci95 <= b.target
        # With timing off (one unwarmed call) there is no figure to hold a plain measurement against.
        if timing_on and (kind in ("prefill", "decode") and batch == 1 and context in b.calibrate_contexts
                          or kind == "throughput" and batch in b.calibrate_batches):
            harness = _harness(kind, call, setup, runs)
            after = (lambda: _after_first(runs)) if kind == "throughput" else None
            calibrate.record(point, calibrate.calibrate_point(point, lm, ids, backend, harness,
                                                              b.calibrate_tolerance, b.calibrate_max_s, after),
                             b.calibrate_tolerance)
            lap("calibration")
    except Exception as exc:
        if not is_out_of_memory(exc):
            release_backend_state(lm, backend)  # a compiled or captured state the failure left is not the next point's
            raise
        oom = str(exc).splitlines()[0][:200]
        exc.__traceback__ = None  # its frames hold the tensors that filled the memory
        lap("calibration" if measured else "out_of_memory")  # from the last phase that finished to the failure
    if oom is not None:
        point.error = oom
        if measured:  # the point ran; its plain re-measurement did not fit (a throughput sweep runs to the limit,
            # and alternating two ways of calling can fragment what the rounds' calls fit in): the figures stand
            # unchecked, which is said, not called a harness fault
            point.calibration = Calibration(unresolved=[f"calibration ran out of memory, the figures are not "
                                                        f"checked: {oom}"])
        else:
            point.status = "oom"
        release_backend_state(lm, backend)
        b.store.add(point)
        if not measured:
            raise PointOutOfMemory(f"{lm.name}: out of memory at {kind} context {context} batch {batch} (recorded; "
                                   "sweep goes on)", point)
        return point
    b.store.add(point)
    return point
