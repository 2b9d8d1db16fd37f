"""The gate's between-machine allowances (``gate-allowances.json`` beside a baseline), from two gate runs of
unchanged code on two machines of the same kind:

    ssmbench gate-allowances A.json B.json -o baselines/h200/gate/gate-allowances.json --measured "..."

A.json and B.json are pytest-benchmark files of ``pytest -m gate --benchmark-save=...``. For every point both
hold, each timed figure's allowance is the two machines' relative difference (``|a - b| / min(a, b)``) times
``gatecheck.MACHINE_MARGIN`` -- two machines are a sample of two. The gate adds its floor and the baseline's own spread
(``ssmbench/gatecheck.py``). Nothing is overwritten."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pytest_ssmbench.baselines import MUST_MATCH, invalid_baseline
from ssmbench.gatecheck import EXACT, MACHINE_MARGIN, figures
from ssmbench.safeio import atomic_write_text


def allowances(a: dict, b: dict) -> dict[str, dict[str, float]]:
    """{benchmark name: {figure: allowance}} for the points both files hold."""
    theirs = {bench["name"]: bench for bench in b["benchmarks"]}
    out = {}
    for bench in a["benchmarks"]:
        other = theirs.get(bench["name"])
        if other is None:
            continue
        mine = figures(bench.get("extra_info") or {}, bench["stats"].get("median"), gpu=True)
        yours = figures(other.get("extra_info") or {}, other["stats"].get("median"), gpu=True)
        row = {}
        for figure, (x, _) in mine.items():
            y = yours[figure][0]
            if figure in EXACT or x is None or y is None or min(x, y) <= 0:
                continue
            row[figure] = round(MACHINE_MARGIN * abs(x - y) / min(x, y), 5)
        if row:
            out[bench["name"]] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="a gate run's pytest-benchmark file, one machine")
    parser.add_argument("b", type=Path, help="the same gate on unchanged code, another machine")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the allowances file to write (must not exist)")
    parser.add_argument("--measured", required=True, help="how they were measured (machines, date, commit): kept in "
                                                          "the file and shown by the gate")
    args = parser.parse_args(argv)
    if args.out.exists() or args.out.is_symlink():
        parser.error(f"{args.out} exists: nothing is overwritten (remove it first)")
    data = []
    for path in (args.a, args.b):
        try:
            loaded = json.loads(path.read_text())
            why = invalid_baseline(loaded) if isinstance(loaded, dict) and "benchmarks" in loaded else \
                "not a pytest-benchmark file"
        except (OSError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why:
            parser.error(f"{path}: {why}")
        data.append(loaded)
    differ = [k for k in MUST_MATCH if data[0]["machine_info"].get(k) != data[1]["machine_info"].get(k)]
    if differ:
        parser.error(f"{args.a} and {args.b} differ in {', '.join(differ)}: allowances come from two machines of "
                     "one kind, same models and dtype")
    points = allowances(*data)
    if not points:
        parser.error(f"{args.a} and {args.b} share no timed point")
    atomic_write_text(args.out, json.dumps({"measured": args.measured, "from": [str(args.a), str(args.b)],
                                            "margin": MACHINE_MARGIN, "points": points}, indent=1) + "\n")
    print(f"{args.out}: {len(points)} points; largest allowance "
          f"{max(v for row in points.values() for v in row.values()):.1%}")
    return 0
