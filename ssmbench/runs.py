"""What a benchmarked callable collected, call by call (``Runs``: step intervals, whole calls, the allocator's
state, energy windows), and the statistics of a point's rounds (spread, 95 % interval, rounds for a target)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .measure import EnergyWindows, StepClock, round_peak, round_start


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
