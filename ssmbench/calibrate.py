"""Calibration: a benchmark point measured a second, plain way, in the same process right after it -- plain
``generate()`` (or the suite graph's own ``generate``), a synchronize and a wall clock, the allocator's peak
-- and compared with what the harness recorded. No StepClock, no pytest-benchmark, no per-round bookkeeping:
if the harness inflated a figure, the plain one shows it.

- prefill: time to first token = the wall time of ``generate(max_new_tokens=1)``; extra peak memory (the
  allocator's peak over a call minus what was allocated just before it).
- decode: extra peak memory of a plain call with the point's token count; for the compiled backend (plain
  ``generate()``) the median time between tokens as ``generate()`` hands them to a streamer (its ``put``,
  after the token's copy to the host has synchronized), over a call of the point's own token count -- the
  wall time a user's streamer sees, no prefill in it; for the suite's graph and mamba-ssm's native generate,
  which take no streamer, ``(t(1 + M) - t(2)) / (M - 1)`` (optimum-benchmark's prefill/decode split, with the
  first decode step, which costs more, on the prefill's side as the suite's median step has it), M the point's
  own number of decode tokens: two prefills' noise in it, which the graphs' steady steps can afford (phi-2's
  compiled decode at 131072 on the H200, whose 9 s prefills put 14 % of noise into each such figure, could not).
  Eager decode per token is not calibrated: launch-bound on a shared host, it moves by more than 5 % from one
  call to the next (its spread says so).
- throughput: the whole call of the point's batch (``call_s``: its tokens per second end to end are batch x new
  tokens over it) and, through ``generate()``, the call after its first token (``decode_s``: the decode-only
  tokens per second), each against a plain ``generate()`` of the same batch with a streamer's clock (the suite's
  graph and native generate: the whole call only, their own generate); extra peak memory. Eager included: paired
  calls decide it, or say it is unresolved. A calibration that runs out of memory leaves the point's figures
  unchecked, said as unresolved.

Times are compared twice. The harness's own call (the callable and setup the rounds ran) alternates with the
plain call: a drifting host moves both alike (on the H200, Mamba's launch-bound prefill at 512 tokens took
55-97 ms from one call to the next), so what is left is the harness. Each pair gives a ratio; the pairs go on
until the 95 % interval of the median ratio (distribution-free, from order statistics) decides -- wholly within
the tolerance or wholly beyond it -- or ``MAX_PAIRS`` or ``MAX_SECONDS`` is reached (pytest-benchmark's way of
calibrating rounds to a precision). The tolerance is a band symmetric as a ratio: suite/plain within
1 / (1 + tolerance) .. 1 + tolerance (a harness that halves a time is as wrong as one that doubles it; at the
CPU's 100 % a band of -100 .. +100 % could not fail the first). The figure **fails** when the whole interval
lies beyond the band, **agrees** when it lies within, and is **unresolved** otherwise (the host's noise is wider
than the band: reported, not passed off as agreement). The point's own figure (``of="point"``) is held against
the same plain median and fails only beyond the band and three times the rounds' and plain calls' spread
(interquartile range over median): a point measured while the host was slow is flagged by its spread, not
called a harness bug.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from . import backends
from . import plain as plainly
from .loading import LoadedModel
from .point import Calibration, Point
from .runs import relative_iqr

# At least CALLS pairs (harness call, plain call) per figure, past MAX_SECONDS if need be: 6 is the fewest whose
# median interval can reach 95 % (their whole range, 1 - 2/64). With 3 (75 %), the long points stopped at the time
# cap undecided (Mamba's compiled decode at 131072 on the H200: median 0.1 % off, interval -16 .. +21 %) ...
CALLS = 6
MAX_PAIRS = 41  # ... and more, until the median ratio's 95 % interval decides (wholly within the tolerance or
MAX_SECONDS = 30.0  # wholly beyond it), or this many pairs or seconds: phi-2's compiled decode at 512 on the H200
#                     moved 15 % between calls seconds apart, so 3 pairs could not tell a 5 % bias from the host
NOISE_FACTOR = 3.0


def _low_bound(tolerance: float) -> float:
    """The lower edge of the band of agreement for suite/plain - 1: ratios are held to it symmetrically, suite/plain
    within [1 / (1 + tolerance), 1 + tolerance] (-4.8 .. +5 % at 5 %; -50 .. +100 % at the CPU's 100 %, where a
    plain difference's -100 % could never be reached: a harness that reported half the time would always pass)."""
    return 1 / (1 + tolerance) - 1


@dataclass
class Check:
    figure: str  # "ttft_s", "decode_s_per_token", "extra_peak_bytes"; throughput: "call_s", "decode_s"
    suite: float
    plain: float
    noise: float = 0.0  # the point's figure: the rounds' and plain calls' own spread (relative)
    of: str = "harness"  # "harness": its call re-run alternately with the plain one; "point": the point's figure
    low: float | None = None  # harness times: 95 % interval of the median of suite/plain - 1 over the pairs
    high: float | None = None
    pairs: int | None = None
    coverage: float | None = None  # the interval's confidence (under 0.95 with fewer than 6 pairs)

    @property
    def diff(self) -> float:
        return abs(self.suite - self.plain) / self.plain if self.plain else math.inf

    @property
    def excess(self) -> float:
        """How far apart as a ratio, either way: max(suite/plain, plain/suite) - 1."""
        if not self.plain or not self.suite:
            return 0.0 if self.suite == self.plain else math.inf
        return max(self.suite / self.plain, self.plain / self.suite) - 1

    def fails(self, tolerance: float) -> bool:
        """Paired (harness) times: the whole interval beyond the band (``_low_bound``). The point's figure: over
        the tolerance either way and over three times the measurements' own spread. Memory: over the tolerance."""
        if self.low is not None and self.high is not None:
            return self.low > tolerance or self.high < _low_bound(tolerance)
        return self.excess > tolerance and self.excess > NOISE_FACTOR * self.noise

    def unresolved(self, tolerance: float) -> bool:
        """Paired times whose interval neither lies wholly beyond the band nor wholly within it: the host's
        noise too wide to say the harness differs, or that it agrees."""
        return (self.low is not None and self.high is not None and not self.fails(tolerance)
                and (self.low < _low_bound(tolerance) or self.high > tolerance))


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free interval for the median: (the k-th smallest, the k-th largest, its coverage), k the
    largest with coverage 1 - 2 P(Binomial(n, 1/2) < k) of at least ``confidence``; with fewer than 6 values
    none reaches 95 %, and the whole range is returned with what it covers."""
    ordered, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], coverage(k)


def _ratio_interval(suite: list[float], plain: list[float]) -> tuple[float, float, float]:
    """The 95 % interval of the median of suite/plain - 1 over the pairs (``median_interval``)."""
    return median_interval([s / p - 1 for s, p in zip(suite, plain, strict=True)])


def paired_check(figure: str, suite: list[float], plain: list[float]) -> Check:
    """The harness's calls against the plain calls they alternated with: the medians, and the interval of
    the median ratio."""
    low, high, cover = _ratio_interval(suite, plain)
    return Check(figure, statistics.median(suite), statistics.median(plain), low=low, high=high, pairs=len(suite),
                 coverage=cover)


def resolved(suite: list[float], plain: list[float], tolerance: float) -> bool:
    """Enough pairs: a 95 % interval of the median ratio that decides -- wholly within the tolerance, or
    wholly beyond it."""
    if len(suite) < CALLS:
        return False
    low, high, cover = _ratio_interval(suite, plain)
    floor = _low_bound(tolerance)
    return cover >= 0.95 and (floor <= low and high <= tolerance or low > tolerance or high < floor)


def calibrate_point(point: Point, lm: LoadedModel, ids: torch.Tensor, backend: str,
                    harness: Callable[[], float], tolerance: float = 0.05,
                    max_seconds: float = MAX_SECONDS,
                    harness_after_first: Callable[[], float | None] | None = None) -> list[Check]:
    """The plain measurements of a prefill, decode or throughput point, as checks against the point's figures.
    ``harness`` makes one more call the way the point's rounds did and returns its figure (time to first token
    for prefill, the median step for decode, the whole call for throughput); ``harness_after_first`` (throughput)
    reads that call's time after its own first token."""
    checks: list[Check] = []
    t = point.timing
    peak = plainly.peak(lm, ids, point.new_tokens, backend)
    if peak is not None and point.memory.extra_peak_bytes is not None:
        checks.append(Check("extra_peak_bytes", point.memory.extra_peak_bytes, peak))
    suite: list[float] = []
    plain: list[float] = []
    after_suite: list[float] = []  # throughput: each call after its own first token (the decode-only figure)
    after_plain: list[float] = []
    if point.kind == "throughput" and t.tokens_per_s:
        figure = "call_s"
        point_value = point.batch * point.new_tokens / t.tokens_per_s
        with_decode = point.new_tokens >= 2 and harness_after_first is not None

        def pair() -> None:
            suite.append(harness())
            after = harness_after_first() if with_decode else None
            call, plain_after = plainly.timed(lm, ids, point.new_tokens, backend)
            plain.append(call)
            if after is not None and plain_after is not None:
                after_suite.append(after)
                after_plain.append(plain_after)
    elif point.kind == "prefill":
        figure, point_value = "ttft_s", t.ttft_s

        def pair() -> None:
            suite.append(harness())
            plain.append(plainly.call(lm, ids, 1, backend))
    elif point.kind == "decode" and backend != "eager" and t.decode_s_per_token and point.new_tokens >= 3:
        figure, point_value = "decode_s_per_token", t.decode_s_per_token
        # As many decode tokens as the point's: steps get cheaper over a longer decode (Mamba's compiled decode
        # at 131072 on the H200: 5.4 ms over the first 32, 4.9 averaged over 630), so the same length is
        # compared.
        m = point.new_tokens
        if not backends.get(backend).streams(lm):
            plainly.call(lm, ids, 1 + m, backend)  # warms the graph for this length

            # The suite's figure is the steady step (the median); the first decode step after the prefill costs
            # more (phi-2 compiled on the H200: 8-10 ms against 4.2), so the plain call with two tokens is the
            # baseline, not the one with one: (t(1 + M) - t(2)) / (M - 1). The mean, that step included, is the
            # point's tpot_s. The prefills' noise in the difference is what more pairs are for.
            def pair() -> None:
                suite.append(harness())
                short = plainly.call(lm, ids, 2, backend)
                plain.append((plainly.call(lm, ids, 1 + m, backend) - short) / (m - 1))
        else:
            # plain generate(), the harness's call exactly (same token count, warmed by the point's rounds), with
            # a streamer's clock in place of the StepClock's CUDA events: the median of its steps
            def pair() -> None:
                suite.append(harness())
                plain.append(statistics.median(plainly.steps(lm, ids, m, backend)))
    else:
        return checks
    def decided() -> bool:
        return resolved(suite, plain, tolerance) and (
            len(after_plain) != len(plain) or resolved(after_suite, after_plain, tolerance))

    start = time.perf_counter()
    while not decided() and (
            len(suite) < CALLS or (len(suite) < MAX_PAIRS and time.perf_counter() - start < max_seconds)):
        pair()
    checks.append(paired_check(figure, suite, plain))
    checks.append(Check(figure, point_value, statistics.median(plain), _spread(t.round_values_s) + _spread(plain),
                        of="point"))
    if after_plain and len(after_plain) == len(plain) and t.decode_tokens_per_s:
        checks.append(paired_check("decode_s", after_suite, after_plain))
        checks.append(Check("decode_s", point.batch * (point.new_tokens - 1) / t.decode_tokens_per_s,
                            statistics.median(after_plain),
                            _spread(t.decode_round_values_s or []) + _spread(after_plain), of="point"))
    return checks


def record(point: Point, checks: list[Check], tolerance: float) -> list[str]:
    """Store the checks in the point; return (and store) a failure message per check that fails, and store a
    note per unresolved one."""
    def says(c: Check) -> str:
        batch = f" batch {point.batch}" if point.batch != 1 else ""
        return (f"{point.model} {point.kind} @ {point.context}{batch} ({point.backend}): {c.figure} "
                f"{_show(c.figure, c.suite)} {_WHAT[c.of]} vs {_show(c.figure, c.plain)} measured plainly: "
                f"{(c.suite / c.plain - 1) * 100 if c.plain else math.inf:+.1f} %")

    band = f"{_low_bound(tolerance) * 100:+.1f} .. +{tolerance * 100:g} %"
    failures = [says(c) + (f" ({_interval(c)}: all of it outside {band})" if c.low is not None else
                           f" (outside {band}"
                           f"{f' and > {NOISE_FACTOR:g} x the spread {c.noise * 100:.1f} %' if c.noise else ''})")
                for c in checks if c.fails(tolerance)]
    unresolved = [says(c) + f", unresolved ({_interval(c)}: the host's noise is wider than {band})"
                  for c in checks if c.unresolved(tolerance)]
    point.calibration = Calibration([asdict(c) | {"diff": c.diff, "fails": c.fails(tolerance),
                                                  "unresolved": c.unresolved(tolerance)} for c in checks],
                                    tolerance, failures, unresolved)
    return failures


def _interval(c: Check) -> str:
    return (f"{c.coverage * 100:.0f} % interval {c.low * 100:+.1f} .. {c.high * 100:+.1f} % over {c.pairs} "
            f"pair{'s' if c.pairs != 1 else ''}")


_WHAT = {"harness": "by the suite's call", "point": "in the point's rounds"}


def _spread(values: list[float]) -> float:
    """How far the values lie apart, relative: the interquartile range over the median (a range would grow with
    the number of calls, and excuse more the more were made); 0 for fewer than 3."""
    return relative_iqr(values, minimum=3) or 0.0


def _show(figure: str, value: float) -> str:
    return f"{value / 1e9:.3f} GB" if figure.endswith("bytes") else f"{value * 1e3:.2f} ms"
