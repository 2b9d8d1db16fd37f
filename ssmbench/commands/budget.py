"""Where a sweep's time went, by phase, from its points files:

    ssmbench budget POINTS.json ... [--wall SECONDS]

Phases: model build (each model's load, counted once), then per point release (earlier points' state), warmup
(compilation, CUDA-graph capture and settling included), pilot (--bench-rounds auto), rounds, finish,
calibration, and out_of_memory (a point that ran out of memory: its time until then). Points recorded since the
suite timestamps its phases (``timing.phases_s``) are read as measured; older points are estimated from their
figures (warm-up: the first call plus the further warm-up calls; rounds: rounds x the median call; calibration:
its pairs x two calls) and said to be. ``--wall``: the run's wall time, so what no point accounts for
(imports, collection, the scaling checks, the summary) shows too."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from ssmbench.point import Point
from ssmbench.results import ResultStore

PHASES = ("build", "release", "warmup", "pilot", "rounds", "finish", "calibration", "out_of_memory")


def estimated(p: Point) -> dict[str, float]:
    """A point's phases from its figures, where it has no timestamps."""
    t, median = p.timing, p.timing.median_s or 0.0
    if p.status == "oom":
        return {"out_of_memory": t.first_call_s or 0.0}
    extra = max(0, (t.warmup_calls or t.settle_calls or 1) - 1)
    out = {"warmup": (t.first_call_s or 0.0) + extra * median, "rounds": (t.rounds or 0) * median}
    if t.pilot_rounds:
        out["pilot"] = t.pilot_rounds * median
    pairs = max((c.get("pairs") or 0 for c in (p.calibration.checks if p.calibration else [])), default=0)
    if pairs:
        out["calibration"] = 2 * pairs * median
    return out


def budget(points: list[Point]) -> tuple[dict[str, dict[str, float]], int]:
    """({group: {phase: seconds}}, how many points were estimated); group: model / backend, and "all"."""
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    built, guessed = set(), 0
    for p in points:
        phases = p.timing.phases_s
        if phases is None:
            phases, guessed = estimated(p), guessed + 1
        elif p.status == "oom":  # its phases up to the failure are the cost of finding the limit
            phases = {"out_of_memory": sum(phases.values())}
        if p.model not in built and p.load_s:
            built.add(p.model)
            phases = {**phases, "build": p.load_s}
        for group in (f"{p.model} / {p.backend}", "all"):
            for phase, seconds in phases.items():
                table[group][phase] += seconds
    return table, guessed


def render(table: dict[str, dict[str, float]], guessed: int, total: int, wall: float | None) -> list[str]:
    lines = ["| what | " + " | ".join(PHASES) + " | total |", "| --- |" + " ---: |" * (len(PHASES) + 1)]
    for group in sorted(table, key=lambda g: (g == "all", g)):
        row = table[group]
        lines.append(f"| {group} | " + " | ".join(f"{row.get(ph, 0.0):.0f}" for ph in PHASES)
                     + f" | {sum(row.values()):.0f} |")
    accounted = sum(table["all"].values()) if "all" in table else 0.0
    notes = [f"{total} points, seconds; {guessed} of them estimated from their figures (no timestamps recorded)"
             if guessed else f"{total} points, seconds, from their own timestamps"]
    if wall is not None:
        notes.append(f"run wall time {wall:.0f} s: {max(0.0, wall - accounted):.0f} s outside any point (imports, "
                     "collection, scaling checks, summary)")
    return [*lines, "", *notes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="+", help="points files (--ssm-results-file) of one run")
    parser.add_argument("--wall", type=float, default=None, help="the run's wall time in seconds")
    args = parser.parse_args(argv)
    points: list[Point] = []
    for path in args.files:
        try:
            points += ResultStore.read(path).points
        except (OSError, ValueError) as exc:
            print(f"ssmbench budget: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    table, guessed = budget(points)
    print("\n".join(render(table, guessed, len(points), args.wall)))
    return 0
