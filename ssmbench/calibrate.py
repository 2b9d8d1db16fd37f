"""Calibration: a benchmark point measured a second, plain way, in the same process right after it -- plain
``generate()`` (or the suite graph's own ``generate``), a synchronize and a wall clock, the allocator's peak
-- and compared with what the harness recorded. No StepClock, no pytest-benchmark, no per-round bookkeeping:
if the harness inflated a figure, the plain one shows it.

- prefill: time to first token = the wall time of ``generate(max_new_tokens=1)``; extra peak memory (the
  allocator's peak over a call minus what was allocated just before it).
- decode: extra peak memory of a plain call with the point's token count; for the compiled and graphed
  backends the steady time per token as ``(t(1 + M) - t(2)) / (M - 1)`` (optimum-benchmark's prefill/decode
  split, with the first decode step, which costs more, on the prefill's side as the suite's median step has
  it), M large enough that the decode outweighs the prefill's noise. Eager decode per token is not calibrated:
  launch-bound on a shared host, it moves by more than 5 % from one call to the next (its spread says so).

Times are compared twice. The harness's own call (the callable and setup the rounds ran) alternates with the
plain call, ``CALLS`` times each (more for short calls), and their medians must agree within the tolerance: a
drifting host moves both alike (on the H200, Mamba's launch-bound prefill at 512 tokens took 55-97 ms from one
call to the next), so what is left is the harness. The point's own figure (``of="point"``) is held against the
same plain median and fails only beyond the tolerance and three times the rounds' and plain calls' spread: a
point measured while the host was slow is flagged by its spread, not called a harness bug.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .bench import BACKEND_KWARGS, SUITE_GRAPH, decode_path, graphed_decoder
from .loading import LoadedModel
from .measure import synchronize
from .point import Calibration, Point

CALLS = 3  # at least this many harness and plain calls per figure, alternating (the medians are compared) ...
MAX_CALLS = 15  # ... and more, up to this many, while they have taken less than MIN_SECONDS: a launch-bound
MIN_SECONDS = 2.0  # call (Mamba's prefill at 512 on the H200: 55-97 ms) needs more than 3 for a stable median
NOISE_FACTOR = 3.0
MAX_DECODE_TOKENS = 256


@dataclass
class Check:
    figure: str  # "ttft_s", "decode_s_per_token", "extra_peak_bytes"
    suite: float
    plain: float
    noise: float = 0.0  # the measurements' own spread (relative): off a GPU, or for the point's own figure
    of: str = "harness"  # "harness": its call re-run alternately with the plain one; "point": the point's figure

    @property
    def diff(self) -> float:
        return abs(self.suite - self.plain) / self.plain if self.plain else math.inf

    def fails(self, tolerance: float) -> bool:
        """Over the tolerance -- and, off a GPU, over three times the two measurements' own spread: a shared
        2-core host moves a millisecond call by 2x between seconds, which says nothing about the harness."""
        return self.diff > tolerance and self.diff > NOISE_FACTOR * self.noise


def _plain_call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> float:
    """One plain greedy call of exactly ``new_tokens`` tokens: wall seconds, synchronized both ends."""
    synchronize(lm.device)
    start = time.perf_counter()
    with torch.no_grad():
        if decode_path(lm, backend) == SUITE_GRAPH:
            graphed_decoder(lm).generate(ids, new_tokens)
        else:
            lm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **BACKEND_KWARGS[backend])
    synchronize(lm.device)
    return time.perf_counter() - start


def _plain_peak(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> int | None:
    """The allocator's peak over a plain call, minus what was allocated just before it (after a warm-up call
    where the backend compiles or captures, so its state is in place, as in the harness's rounds): the median
    over calls -- ``CALLS`` of them, fewer where they take over ``MIN_SECONDS`` -- as the point takes the median
    of its rounds. (On the H200 the compiled decode of phi-2 at 512 tokens peaked 220 MiB over its start in some
    calls and 253 in others, 33 MiB that cuBLAS re-allocates when torch.compile's graphs have cleared it.)"""
    if lm.device.type != "cuda":
        return None
    if backend != "eager":
        _plain_call(lm, ids, new_tokens, backend)
    gc.collect()
    peaks: list[int] = []
    start = time.perf_counter()
    while not peaks or (len(peaks) < CALLS and time.perf_counter() - start < MIN_SECONDS):
        synchronize(lm.device)
        torch.cuda.reset_peak_memory_stats(lm.device)
        before = torch.cuda.memory_allocated(lm.device)
        _plain_call(lm, ids, new_tokens, backend)
        peaks.append(torch.cuda.max_memory_allocated(lm.device) - before)
    return int(statistics.median(peaks))


def calibrate_point(point: Point, lm: LoadedModel, ids: torch.Tensor, backend: str,
                    harness: Callable[[], float]) -> list[Check]:
    """The plain measurements of a prefill or decode point, as checks against the point's figures. ``harness``
    makes one more call the way the point's rounds did and returns its figure (time to first token for
    prefill, the median step for decode)."""
    checks: list[Check] = []
    t = point.timing
    peak = _plain_peak(lm, ids, point.new_tokens, backend)
    if peak is not None and point.memory.extra_peak_bytes is not None:
        checks.append(Check("extra_peak_bytes", point.memory.extra_peak_bytes, peak))
    suite: list[float] = []
    plain: list[float] = []
    if point.kind == "prefill":
        figure, point_value = "ttft_s", t.ttft_s

        def pair() -> None:
            suite.append(harness())
            plain.append(_plain_call(lm, ids, 1, backend))
    elif point.kind == "decode" and backend != "eager" and t.decode_s_per_token:
        figure, point_value = "decode_s_per_token", t.decode_s_per_token
        # M decode tokens: at least the point's, and enough that they take about as long as the prefill.
        m = min(MAX_DECODE_TOKENS, max(point.new_tokens, math.ceil(t.ttft_s / t.decode_s_per_token)))
        _plain_call(lm, ids, 1 + m, backend)  # the longer call first: a static cache sized for it serves both

        # The suite's figure is the steady step (the median); the first decode step after the prefill costs
        # more (phi-2 compiled on the H200: 8-10 ms against 4.2), so the plain call with two tokens is the
        # baseline, not the one with one: (t(1 + M) - t(2)) / (M - 1). The mean, that step included, is the
        # point's tpot_s.
        def pair() -> None:
            suite.append(harness())
            short = _plain_call(lm, ids, 2, backend)
            plain.append((_plain_call(lm, ids, 1 + m, backend) - short) / (m - 1))
    else:
        return checks
    start = time.perf_counter()
    while len(suite) < CALLS or (len(suite) < MAX_CALLS and time.perf_counter() - start < MIN_SECONDS):
        pair()
    gpu = lm.device.type == "cuda"
    checks.append(Check(figure, statistics.median(suite), statistics.median(plain),
                        0.0 if gpu else _spread(suite) + _spread(plain)))
    checks.append(Check(figure, point_value, statistics.median(plain), _spread(t.round_values_s) + _spread(plain),
                        of="point"))
    return checks


def record(point: Point, checks: list[Check], tolerance: float) -> list[str]:
    """Store the checks in the point; return (and store) a failure message per check over ``tolerance``."""
    failures = [f"{point.model} {point.kind} @ {point.context} ({point.backend}): {c.figure} "
                f"{_show(c.figure, c.suite)} {_WHAT[c.of]} vs {_show(c.figure, c.plain)} measured plainly: "
                f"{c.diff * 100:.1f} % apart (> {tolerance * 100:g} %"
                f"{f' and > {NOISE_FACTOR:g} x the spread {c.noise * 100:.1f} %' if c.noise else ''})"
                for c in checks if c.fails(tolerance)]
    point.calibration = Calibration([asdict(c) | {"diff": c.diff, "fails": c.fails(tolerance)} for c in checks],
                                    tolerance, failures)
    return failures


_WHAT = {"harness": "by the suite's call", "point": "in the point's rounds"}


def _spread(values: list[float]) -> float:
    """How far the values lie apart, relative, the slowest left out (one stalled call must not excuse
    everything): 0 for fewer than 3."""
    kept = sorted(values)[:-1]
    return (kept[-1] - kept[0]) / statistics.median(values) if len(kept) >= 2 else 0.0


def _show(figure: str, value: float) -> str:
    return f"{value / 1e9:.3f} GB" if figure.endswith("bytes") else f"{value * 1e3:.2f} ms"
