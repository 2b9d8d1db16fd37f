#!/usr/bin/env python3
"""The summary a benchmark run prints (per-model tables, spreads, calibration, crossovers), re-read from a stored
points file, and optionally its scaling report: a committed baseline read with the current code.

    python scripts/summarize.py baselines/h200/points-synthetic-bf16.json [--report DIR]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssmbench.results import ResultStore, summary_lines, write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", type=Path, help="a results file written by a benchmark run (--ssm-results-file)")
    parser.add_argument("--report", type=Path, help="also write the scaling report (plots, README.md) here")
    args = parser.parse_args(argv)
    if not args.points.is_file():
        parser.error(f"no points file at {args.points}")
    try:
        store = ResultStore.read(args.points)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        parser.error(f"{args.points} is not a results file of a benchmark run ({type(exc).__name__}: {exc})")
    if not store.points:
        parser.error(f"{args.points} holds no points (not a results file of a benchmark run?)")
    for line in summary_lines(store):
        print(line)
    if args.report:
        for path in write_report(store, args.report):
            print(f"scaling report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
