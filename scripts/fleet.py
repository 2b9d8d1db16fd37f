#!/usr/bin/env python3
"""Several devices' baselines side by side in one self-contained HTML page (plots embedded).

    python scripts/fleet.py baselines/h200 baselines/dgx-spark -o docs/fleet/h200-vs-dgx-spark.html

Each argument is a baseline folder (its points-*.json files), a results file (--ssm-results-file), or a folder
named after a known device with no points yet (baselines/dgx-spark): that device is projected from the first
measured one, and labelled so. --project KEY adds such a device by its key.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssmbench import devices  # noqa: E402
from ssmbench.fleet import FleetError, build, render  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="baseline folders or results files")
    parser.add_argument("--project", action="append", default=[], choices=[p.key for p in devices.PROFILES],
                        help="a device to project from the first measured one (repeatable)")
    parser.add_argument("--disagree", type=float, default=25.0,
                        help="flag rows where two measured devices' figure/floor ratios differ by more (per cent)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the HTML page to write")
    args = parser.parse_args()
    try:
        fleet = build(args.paths, args.project)
        page = render(fleet, args.disagree)
    except (FleetError, OSError) as exc:
        parser.error(str(exc))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(args.output)
    print(f"{args.output}: {', '.join(d.label for d in fleet)} ({len(page) / 1e3:.0f} kB)")
