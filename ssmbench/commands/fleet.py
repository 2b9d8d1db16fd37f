"""Several devices' baselines side by side in one self-contained HTML page (plots embedded).

    ssmbench fleet baselines/h200 baselines/dgx-spark -o docs/fleet/h200-vs-dgx-spark.html

Each argument is a baseline folder (its points-*.json files), a results file (--ssm-results-file), or a folder
named after a known device with no points yet (baselines/dgx-spark): that device is projected from the first
measured one, and labelled so. --project KEY adds such a device by its key.
"""

import argparse
import math
from pathlib import Path

from ssmbench import devices
from ssmbench.fleet import FleetError, build, points_files
from ssmbench.render.html import render
from ssmbench.safeio import atomic_write_text, printable


def percent(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"expected a finite percentage >= 0, got {value!r}")
    return number


def inputs(paths: list[Path]) -> set[Path]:
    """Every file the page is made from (a folder's points files), resolved."""
    found = set()
    for path in paths:
        try:
            found.update(f.resolve() for f in points_files(path))
        except FleetError:
            pass
    return found



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="baseline folders or results files")
    parser.add_argument("--project", action="append", default=[], choices=[p.key for p in devices.PROFILES],
                        help="a device to project from the first measured one (repeatable)")
    parser.add_argument("--disagree", type=percent, default=25.0,
                        help="flag rows where two measured devices' figure/floor ratios differ by more (per cent)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the HTML page to write")
    args = parser.parse_args(argv)
    if args.output.is_dir():
        parser.error(f"-o {args.output} is a folder: name the HTML file to write")
    if args.output.resolve() in inputs(args.paths):
        parser.error(f"-o {args.output} is one of the points files the page is made from: it would be replaced")
    try:
        fleet = build(args.paths, args.project)
        page = render(fleet, args.disagree)
    except (FleetError, OSError) as exc:
        parser.error(str(exc))
    try:
        atomic_write_text(args.output, page)  # a temporary file of its own, renamed over the page
    except OSError as exc:
        parser.error(f"cannot write {args.output}: {type(exc).__name__}: {exc}")
    print(printable(f"{args.output}: {', '.join(d.label for d in fleet)} ({len(page) / 1e3:.0f} kB)"))
    return 0
